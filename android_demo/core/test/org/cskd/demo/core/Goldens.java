package org.cskd.demo.core;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.List;
import java.util.Map;
import org.junit.Assume;

/** Access to the golden files the Python runtime wrote (directory in system property {@code cskd.goldens}). */
final class Goldens {
    private static Map<String, Object> index;

    private Goldens() {}

    static File dir() {
        String d = System.getProperty("cskd.goldens");
        Assume.assumeTrue("system property cskd.goldens not set (run through tests/android or tools/jvm.py)",
                d != null);
        return new File(d);
    }

    @SuppressWarnings("unchecked")
    static synchronized Map<String, Object> index() throws IOException {
        if (index == null) {
            index = (Map<String, Object>) Json.parse(text("goldens.json"));
        }
        return index;
    }

    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> list(String key) throws IOException {
        return (List<Map<String, Object>>) index().get(key);
    }

    static byte[] bytes(String name) throws IOException {
        return Files.readAllBytes(new File(dir(), name).toPath());
    }

    static String text(String name) throws IOException {
        return new String(bytes(name), StandardCharsets.UTF_8);
    }

    static float[] floats(String name) throws IOException {
        ByteBuffer bb = ByteBuffer.wrap(bytes(name)).order(ByteOrder.LITTLE_ENDIAN);
        float[] out = new float[bb.remaining() / 4];
        bb.asFloatBuffer().get(out);
        return out;
    }

    static int i(Object v) {
        return ((Double) v).intValue();
    }

    static double d(Object v) {
        return (Double) v;
    }

    static int[] size(Object v) {
        List<?> l = (List<?>) v;
        return new int[] {i(l.get(0)), i(l.get(1))};
    }

    /** Stored straight-RGBA bytes -> ARGB ints (what a platform decoder hands the core). */
    static int[] argb(String name) throws IOException {
        byte[] b = bytes(name);
        int[] out = new int[b.length / 4];
        for (int k = 0; k < out.length; k++) {
            out[k] = ((b[4 * k + 3] & 0xFF) << 24) | ((b[4 * k] & 0xFF) << 16) | ((b[4 * k + 1] & 0xFF) << 8)
                    | (b[4 * k + 2] & 0xFF);
        }
        return out;
    }

    static ModelManifest manifest(String name) throws IOException {
        return ModelManifest.parse(text(name), name);
    }

    static double[] doubles(Object v) {
        List<?> l = (List<?>) v;
        double[] out = new double[l.size()];
        for (int k = 0; k < out.length; k++) {
            out[k] = (Double) l.get(k);
        }
        return out;
    }
}
