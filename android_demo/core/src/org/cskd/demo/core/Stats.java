package org.cskd.demo.core;

import java.util.Arrays;

/** Summary statistics of timing samples, defined like numpy's (linear interpolation between order stats). */
public final class Stats {
    private Stats() {}

    /**
     * The q-th percentile (0..100) with numpy's default "linear" method, so phone numbers and desktop numbers
     * from {@code cskd_bench.runtime_bench.percentiles} are computed the same way.
     */
    public static double percentile(double[] samples, double q) {
        if (samples.length == 0) {
            throw new IllegalArgumentException("no samples");
        }
        double[] s = samples.clone();
        Arrays.sort(s);
        double pos = q / 100.0 * (s.length - 1);
        int lo = (int) Math.floor(pos);
        int hi = Math.min(lo + 1, s.length - 1);
        double frac = pos - lo;
        return s[lo] + (s[hi] - s[lo]) * frac;
    }

    public static double median(double[] samples) {
        return percentile(samples, 50.0);
    }

    public static double mean(double[] samples) {
        double t = 0;
        for (double v : samples) {
            t += v;
        }
        return t / samples.length;
    }

    public static double min(double[] samples) {
        double m = Double.POSITIVE_INFINITY;
        for (double v : samples) {
            m = Math.min(m, v);
        }
        return m;
    }
}
