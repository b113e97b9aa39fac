package org.cskd.demo.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * From the model's output tensor to what the user sees: distribution, mean score, std, percentile.
 *
 * <p>Port of {@code cskd_runtime.backends.base.postprocess} (dequantize, optional softmax, clip at 0,
 * renormalise; all in float32) and {@code Scorer._results} (mean and variance over the bins in double).
 */
public final class Scores {
    /** Probability of each bin (sums to 1). */
    public final float[] distribution;
    /** {@code sum(p_i * bin_i)} on the model's scale. */
    public final double mean;
    /** Standard deviation of the distribution: how much raters would disagree. */
    public final double std;
    /** Percentile against the manifest's calibration reference, or null. */
    public final Double percentile;
    /** Mean mapped onto the calibration's target scale, or null. */
    public final Double calibrated;

    private Scores(float[] distribution, double mean, double std, Double percentile, Double calibrated) {
        this.distribution = distribution;
        this.mean = mean;
        this.std = std;
        this.percentile = percentile;
        this.calibrated = calibrated;
    }

    /** Float output (already dequantized) -> probabilities, as the Python backends do. */
    public static float[] toDistribution(float[] raw, ModelManifest.OutputSpec spec) {
        float[] y = raw.clone();
        if ("softmax".equals(spec.activation)) {
            float max = Float.NEGATIVE_INFINITY;
            for (float v : y) {
                max = Math.max(max, v);
            }
            for (int i = 0; i < y.length; i++) {
                y[i] = (float) Math.exp(y[i] - max);
            }
        }
        float total = 0f;
        for (int i = 0; i < y.length; i++) {
            y[i] = Math.max(y[i], 0f);
            total += y[i];
        }
        if (total == 0f) {
            total = 1f;
        }
        for (int i = 0; i < y.length; i++) {
            y[i] = y[i] / total;
        }
        return y;
    }

    /** Integer output -> float32 {@code (q - zero_point) * scale}. */
    public static float[] dequantize(byte[] q, boolean unsigned, ModelManifest.Quantization quant) {
        float[] out = new float[q.length];
        float s = (float) quant.scale;
        for (int i = 0; i < q.length; i++) {
            int v = unsigned ? (q[i] & 0xFF) : q[i];
            out[i] = ((float) v - quant.zeroPoint) * s;
        }
        return out;
    }

    /** Scores of one photo from its probability distribution. */
    public static Scores fromDistribution(float[] p, ModelManifest manifest) {
        double[] bins = manifest.output.bins;
        if (p.length != bins.length) {
            throw new IllegalArgumentException("model returned " + p.length + " values, the manifest declares "
                    + bins.length + " bins");
        }
        double mean = 0;
        double sq = 0;
        for (int i = 0; i < p.length; i++) {
            mean += p[i] * bins[i];
            sq += p[i] * bins[i] * bins[i];
        }
        double var = sq - mean * mean;
        double std = Math.sqrt(Math.max(var, 0.0));
        ModelManifest.Calibration cal = manifest.calibration;
        return new Scores(p, mean, std, cal != null ? cal.percentile(mean) : null,
                cal != null ? cal.toTarget(mean) : null);
    }

    /** JSON-ready view (the fields of the Python {@code ScoreResult.to_dict}). */
    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("mean", mean);
        m.put("std", std);
        m.put("percentile", percentile);
        m.put("calibrated", calibrated);
        List<Object> d = new ArrayList<Object>();
        for (float v : distribution) {
            d.add((double) v);
        }
        m.put("distribution", d);
        return m;
    }
}
