package org.cskd.demo.core;

/**
 * Pillow's {@code Image.resize} for 8-bit RGB, reproduced operation for operation so that the phone feeds the
 * model the same pixels as the Python runtime.
 *
 * <p>Convolution filters (box, bilinear, hamming, bicubic, lanczos) follow Pillow's two-pass separable
 * resampler: per output pixel, filter weights over a support scaled by the downscaling factor (that is the
 * antialiasing), normalised to sum 1, converted to 22-bit fixed point and accumulated in 32-bit integers with
 * rounding; two passes in Pillow 13's order (horizontal first unless the height shrinks much more than the
 * width), the first pass only over the rows the second needs. Nearest follows
 * Pillow's affine nearest-neighbour scaling (pixel centres, accumulated in doubles). Integer and double
 * arithmetic is IEEE-identical in Java, so the output is bit-exact; only hamming and lanczos call sin/cos,
 * whose last bit may differ between math libraries and, very rarely, move one pixel by one level.
 */
public final class Resample {
    private static final int PRECISION_BITS = 32 - 8 - 2;

    private Resample() {}

    /** Filter kernel and support radius, as in Pillow's Resample.c. */
    private abstract static class Filter {
        final double support;

        Filter(double support) {
            this.support = support;
        }

        abstract double eval(double x);
    }

    private static final Filter BOX = new Filter(0.5) {
        @Override
        double eval(double x) {
            return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
        }
    };
    private static final Filter BILINEAR = new Filter(1.0) {
        @Override
        double eval(double x) {
            if (x < 0.0) {
                x = -x;
            }
            return x < 1.0 ? 1.0 - x : 0.0;
        }
    };
    private static final Filter HAMMING = new Filter(1.0) {
        @Override
        double eval(double x) {
            if (x < 0.0) {
                x = -x;
            }
            if (x == 0.0) {
                return 1.0;
            }
            if (x >= 1.0) {
                return 0.0;
            }
            x = x * Math.PI;
            // Pillow writes 0.54f and 0.46f: single-precision constants widened to double.
            return Math.sin(x) / x * ((double) 0.54f + (double) 0.46f * Math.cos(x));
        }
    };
    private static final Filter BICUBIC = new Filter(2.0) {
        @Override
        double eval(double x) {
            final double a = -0.5;
            if (x < 0.0) {
                x = -x;
            }
            if (x < 1.0) {
                return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
            }
            if (x < 2.0) {
                return (((x - 5) * x + 8) * x - 4) * a;
            }
            return 0.0;
        }
    };
    private static final Filter LANCZOS = new Filter(3.0) {
        @Override
        double eval(double x) {
            if (-3.0 <= x && x < 3.0) {
                return sinc(x) * sinc(x / 3);
            }
            return 0.0;
        }
    };

    private static double sinc(double x) {
        if (x == 0.0) {
            return 1.0;
        }
        x = x * Math.PI;
        return Math.sin(x) / x;
    }

    private static Filter filter(String name) {
        if ("box".equals(name)) {
            return BOX;
        }
        if ("bilinear".equals(name)) {
            return BILINEAR;
        }
        if ("hamming".equals(name)) {
            return HAMMING;
        }
        if ("bicubic".equals(name)) {
            return BICUBIC;
        }
        if ("lanczos".equals(name)) {
            return LANCZOS;
        }
        throw new IllegalArgumentException("unknown interpolation '" + name + "'");
    }

    /**
     * Resizes {@code in} to {@code outW x outH} with the named Pillow filter (nearest, box, bilinear, hamming,
     * bicubic, lanczos). Returns {@code in} itself when the size is unchanged, as Pillow copies.
     */
    public static RgbImage resize(RgbImage in, int outW, int outH, String interpolation) {
        if (outW <= 0 || outH <= 0) {
            throw new IllegalArgumentException("invalid target size " + outW + "x" + outH);
        }
        if (outW == in.width && outH == in.height) {
            return in;
        }
        if ("nearest".equals(interpolation)) {
            return nearest(in, outW, outH);
        }
        Filter f = filter(interpolation);
        boolean needH = outW != in.width;
        boolean needV = outH != in.height;
        // Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many pixels as
        // the width (cheaper horizontal pass); the pass order changes the 8-bit intermediate, so it must match.
        int dy = in.height - outH;
        boolean horizontalFirst = !(dy > 0 && dy > (in.width - outW) * 2);
        RgbImage cur = in;
        if (horizontalFirst) {
            Coeffs vert = Coeffs.compute(in.height, outH, f);
            if (needH) {
                // Only the source rows the vertical pass will read are resampled horizontally.
                int yFirst = vert.bounds[0];
                int yLast = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
                for (int i = 0; i < outH; i++) {
                    vert.bounds[i * 2] -= yFirst;
                }
                cur = horizontal(cur, outW, yFirst, yLast - yFirst, Coeffs.compute(in.width, outW, f));
            }
            if (needV) {
                cur = vertical(cur, outH, vert);
            }
        } else {
            if (needV) {
                cur = vertical(cur, outH, Coeffs.compute(in.height, outH, f));
            }
            if (needH) {
                cur = horizontal(cur, outW, 0, outH, Coeffs.compute(in.width, outW, f));
            }
        }
        return cur;
    }

    /** Fixed-point weights and source windows for one axis. */
    static final class Coeffs {
        final int ksize;
        final int[] bounds; // per output index: first source index, count
        final int[] kk; // outSize * ksize fixed-point weights

        private Coeffs(int ksize, int[] bounds, int[] kk) {
            this.ksize = ksize;
            this.bounds = bounds;
            this.kk = kk;
        }

        static Coeffs compute(int inSize, int outSize, Filter f) {
            // Pillow passes the box edges as C floats; for whole-image resizes they are exact integers.
            double scale = (double) ((float) inSize - 0.0f) / outSize;
            double filterscale = scale < 1.0 ? 1.0 : scale;
            double support = f.support * filterscale;
            int ksize = (int) Math.ceil(support) * 2 + 1;
            int[] bounds = new int[outSize * 2];
            double[] k = new double[ksize];
            int[] kk = new int[outSize * ksize];
            for (int xx = 0; xx < outSize; xx++) {
                double center = 0.0 + (xx + 0.5) * scale;
                double ww = 0.0;
                double ss = 1.0 / filterscale;
                int xmin = (int) (center - support + 0.5);
                if (xmin < 0) {
                    xmin = 0;
                }
                int xmax = (int) (center + support + 0.5);
                if (xmax > inSize) {
                    xmax = inSize;
                }
                xmax -= xmin;
                for (int x = 0; x < xmax; x++) {
                    double w = f.eval((x + xmin - center + 0.5) * ss);
                    k[x] = w;
                    ww += w;
                }
                for (int x = 0; x < xmax; x++) {
                    if (ww != 0.0) {
                        k[x] /= ww;
                    }
                }
                for (int x = 0; x < ksize; x++) {
                    double v = x < xmax ? k[x] : 0.0;
                    // (int) truncates toward zero in both C and Java: this is Pillow's round-half-away.
                    kk[xx * ksize + x] = v < 0 ? (int) (-0.5 + v * (1 << PRECISION_BITS))
                            : (int) (0.5 + v * (1 << PRECISION_BITS));
                }
                bounds[xx * 2] = xmin;
                bounds[xx * 2 + 1] = xmax;
            }
            return new Coeffs(ksize, bounds, kk);
        }
    }

    private static int clip8(int in) {
        int v = in >> PRECISION_BITS;
        return v < 0 ? 0 : (v > 255 ? 255 : v);
    }

    private static RgbImage horizontal(RgbImage in, int outW, int offset, int rows, Coeffs c) {
        int[] src = in.pixels;
        int inW = in.width;
        int[] out = new int[outW * rows];
        int ksize = c.ksize;
        int half = 1 << (PRECISION_BITS - 1);
        for (int yy = 0; yy < rows; yy++) {
            int rowBase = (yy + offset) * inW;
            for (int xx = 0; xx < outW; xx++) {
                int xmin = c.bounds[xx * 2];
                int xmax = c.bounds[xx * 2 + 1];
                int kb = xx * ksize;
                int s0 = half;
                int s1 = half;
                int s2 = half;
                for (int x = 0; x < xmax; x++) {
                    int p = src[rowBase + xmin + x];
                    int k = c.kk[kb + x];
                    s0 += ((p >> 16) & 0xFF) * k;
                    s1 += ((p >> 8) & 0xFF) * k;
                    s2 += (p & 0xFF) * k;
                }
                out[yy * outW + xx] = (clip8(s0) << 16) | (clip8(s1) << 8) | clip8(s2);
            }
        }
        return new RgbImage(outW, rows, out);
    }

    private static RgbImage vertical(RgbImage in, int outH, Coeffs c) {
        int[] src = in.pixels;
        int w = in.width;
        int[] out = new int[w * outH];
        int ksize = c.ksize;
        int half = 1 << (PRECISION_BITS - 1);
        for (int yy = 0; yy < outH; yy++) {
            int ymin = c.bounds[yy * 2];
            int ymax = c.bounds[yy * 2 + 1];
            int kb = yy * ksize;
            for (int xx = 0; xx < w; xx++) {
                int s0 = half;
                int s1 = half;
                int s2 = half;
                for (int y = 0; y < ymax; y++) {
                    int p = src[(y + ymin) * w + xx];
                    int k = c.kk[kb + y];
                    s0 += ((p >> 16) & 0xFF) * k;
                    s1 += ((p >> 8) & 0xFF) * k;
                    s2 += (p & 0xFF) * k;
                }
                out[yy * w + xx] = (clip8(s0) << 16) | (clip8(s1) << 8) | clip8(s2);
            }
        }
        return new RgbImage(w, outH, out);
    }

    /** Pillow's nearest-neighbour scaling: source pixel under each output pixel centre. */
    private static RgbImage nearest(RgbImage in, int outW, int outH) {
        double ax = (double) ((float) in.width - 0.0f) / outW;
        double ay = (double) ((float) in.height - 0.0f) / outH;
        int[] xin = new int[outW];
        int xmin = outW;
        int xmax = 0;
        double xo = 0.0 + ax * 0.5;
        for (int x = 0; x < outW; x++) {
            int xi = xo < 0.0 ? -1 : (int) xo;
            if (xi >= 0 && xi < in.width) {
                xmax = x + 1;
                if (x < xmin) {
                    xmin = x;
                }
                xin[x] = xi;
            }
            xo += ax;
        }
        int[] out = new int[outW * outH];
        double yo = 0.0 + ay * 0.5;
        for (int y = 0; y < outH; y++) {
            int yi = yo < 0.0 ? -1 : (int) yo;
            if (yi >= 0 && yi < in.height) {
                int row = yi * in.width;
                for (int x = xmin; x < xmax; x++) {
                    out[y * outW + x] = in.pixels[row + xin[x]];
                }
            }
            yo += ay;
        }
        return new RgbImage(outW, outH, out);
    }
}
