package org.cskd.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.util.List;
import java.util.Map;
import org.junit.Test;

/** Postprocessing and statistics against the Python runtime and numpy. */
public class ScoresGoldenTest {
    @Test
    public void distributionsAndScoresMatchPython() throws Exception {
        int n = 0;
        for (Map<String, Object> c : Goldens.list("scores")) {
            ModelManifest m = Goldens.manifest((String) c.get("manifest"));
            double[] raw = Goldens.doubles(c.get("raw"));
            float[] y;
            if ("uint8".equals(c.get("raw_dtype"))) {
                byte[] q = new byte[raw.length];
                for (int k = 0; k < raw.length; k++) {
                    q[k] = (byte) raw[k];
                }
                y = Scores.dequantize(q, true, m.output.quantization);
            } else {
                y = new float[raw.length];
                for (int k = 0; k < raw.length; k++) {
                    y[k] = (float) raw[k];
                }
            }
            Scores s = Scores.fromDistribution(Scores.toDistribution(y, m.output), m);
            double[] dist = Goldens.doubles(c.get("distribution"));
            for (int k = 0; k < dist.length; k++) {
                assertEquals(c.get("manifest") + " p" + k, dist[k], s.distribution[k], 2e-7);
            }
            // float32 softmax/renormalisation may differ by an ulp per bin (exp and summation order differ
            // from numpy's), which moves the mean over bins 1..10 by ~1e-6 at most.
            assertEquals(Goldens.d(c.get("mean")), s.mean, 1e-5);
            assertEquals(Goldens.d(c.get("std")), s.std, 1e-5);
            if (c.get("percentile") == null) {
                assertNull(s.percentile);
            } else {
                assertEquals(Goldens.d(c.get("percentile")), s.percentile, 1e-3);
                assertEquals(Goldens.d(c.get("calibrated")), s.calibrated, 1e-4);
            }
            n++;
        }
        assertTrue(n >= 10);
    }

    @Test
    public void medianAndP90AreNumpys() throws Exception {
        List<Map<String, Object>> cases = Goldens.list("stats");
        for (Map<String, Object> c : cases) {
            double[] s = Goldens.doubles(c.get("samples"));
            assertEquals(Goldens.d(c.get("median")), Stats.median(s), 1e-9);
            assertEquals(Goldens.d(c.get("p90")), Stats.percentile(s, 90), 1e-9);
        }
    }

    @Test
    public void halfPrecisionRoundsToNearestEven() {
        assertEquals((short) 0x3C00, Preprocess.toHalf(1.0f));
        assertEquals((short) 0xC000, Preprocess.toHalf(-2.0f));
        assertEquals((short) 0x7BFF, Preprocess.toHalf(65504f));
        assertEquals((short) 0x7C00, Preprocess.toHalf(65520f)); // rounds up to infinity
        assertEquals((short) 0x0001, Preprocess.toHalf(5.9604645e-8f)); // smallest subnormal
        assertEquals((short) 0x3C00, Preprocess.toHalf(1.0f + 1.0f / 2048)); // tie to even (down)
        assertEquals((short) 0x3C02, Preprocess.toHalf(1.0f + 3.0f / 2048)); // tie to even (up)
        for (float f : new float[] {0f, 1f, -0.5f, 3.140625f, 1e-5f, 60000f}) {
            float back = Preprocess.fromHalf(Preprocess.toHalf(f));
            assertEquals(f, back, Math.abs(f) / 1000 + 1e-7);
        }
    }

    @Test
    public void quantizeRoundsHalfToEvenAndSaturates() {
        ModelManifest.Quantization q = new ModelManifest.Quantization(0.5, 10);
        byte[] u = Preprocess.quantize(new float[] {0.25f, 0.75f, -100f, 100f}, q, "uint8");
        assertEquals(10, u[0] & 0xFF); // 0.5 -> 0 (even) + 10
        assertEquals(12, u[1] & 0xFF); // 1.5 -> 2 + 10
        assertEquals(0, u[2] & 0xFF);
        assertEquals(210, u[3] & 0xFF);
        byte[] s = Preprocess.quantize(new float[] {-100f, 100f}, q, "int8");
        assertEquals(-128, s[0]);
        assertEquals(127, s[1]);
    }
}
