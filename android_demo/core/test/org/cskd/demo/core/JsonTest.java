package org.cskd.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Test;

public class JsonTest {
    @Test
    public void parsesNestedValuesAndEscapes() {
        Object v = Json.parse(" {\"a\": [1, -2.5e3, true, null], \"s\": \"x\\\"y\\u00e9\\n\", \"o\": {}} ");
        Map<?, ?> m = (Map<?, ?>) v;
        List<?> a = (List<?>) m.get("a");
        assertEquals(1.0, (Double) a.get(0), 0);
        assertEquals(-2500.0, (Double) a.get(1), 0);
        assertEquals(Boolean.TRUE, a.get(2));
        assertNull(a.get(3));
        assertEquals("x\"y\u00e9\n", m.get("s"));
        assertTrue(((Map<?, ?>) m.get("o")).isEmpty());
    }

    @Test
    public void rejectsMalformedInputWithOffset() {
        for (String bad : new String[] {"{", "[1,]", "{\"a\" 1}", "tru", "\"abc", "{} x", "01x"}) {
            try {
                Json.parse(bad);
                fail("accepted " + bad);
            } catch (Json.ParseException ex) {
                assertTrue(ex.getMessage(), ex.getMessage().contains("offset"));
            }
        }
    }

    @Test
    public void writesWhatItReads() {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("n", 3.0);
        m.put("f", 0.125);
        m.put("nan", Double.NaN);
        m.put("s", "tab\there \"q\"");
        m.put("l", Arrays.asList((Object) 1.0, "two", null));
        String text = Json.write(m);
        assertEquals("{\"n\":3,\"f\":0.125,\"nan\":null,\"s\":\"tab\\there \\\"q\\\"\",\"l\":[1,\"two\",null]}", text);
        Map<?, ?> back = (Map<?, ?>) Json.parse(Json.writePretty(m));
        assertEquals(0.125, (Double) back.get("f"), 0);
        assertEquals("tab\there \"q\"", back.get("s"));
    }
}
