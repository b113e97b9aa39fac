package org.cskd.demo.core;

/**
 * The manifest's preprocessing, after decoding: resize, crop, normalise, layout, input dtype.
 *
 * <p>Java port of {@code cskd_runtime.preprocess} ({@code resize_and_crop}, {@code normalize}, {@code to_layout},
 * {@code cast_input}). Normalisation runs in single precision in the same order as numpy
 * ({@code x * scale - mean) / std}, each step rounded to float32), so tensors match bit for bit.
 */
public final class Preprocess {
    private Preprocess() {}

    /** The (width, height) after resizing, before cropping, for an upright {@code w x h} image. */
    public static int[] resizeSize(int w, int h, ModelManifest.InputSpec spec) {
        if ("stretch".equals(spec.resizeMode)) {
            return new int[] {spec.resizeWidth, spec.resizeHeight};
        }
        int target = spec.resizeHeight;
        // Python's round() on a double is round-half-even, as is Math.rint.
        if (w <= h) {
            return new int[] {target, Math.max(target, (int) Math.rint((double) h * target / w))};
        }
        return new int[] {Math.max(target, (int) Math.rint((double) w * target / h)), target};
    }

    /** Resize then crop as the spec says; {@code img} must already be upright RGB. */
    public static RgbImage resizeAndCrop(RgbImage img, ModelManifest.InputSpec spec) {
        int[] size = resizeSize(img.width, img.height, spec);
        RgbImage out = Resample.resize(img, size[0], size[1], spec.interpolation);
        if ("center".equals(spec.cropMode) && (out.width != spec.width || out.height != spec.height)) {
            int left = (out.width - spec.width) / 2;
            int top = (out.height - spec.height) / 2;
            out = out.crop(left, top, spec.width, spec.height);
        }
        return out;
    }

    /** Normalised float32 tensor (batch of one) in the spec's layout, before any input quantization. */
    public static float[] normalize(RgbImage img, ModelManifest.InputSpec spec) {
        int h = img.height;
        int w = img.width;
        float scale = (float) spec.scale;
        float[] mean = {(float) spec.mean[0], (float) spec.mean[1], (float) spec.mean[2]};
        float[] std = {(float) spec.std[0], (float) spec.std[1], (float) spec.std[2]};
        float[] out = new float[3 * h * w];
        boolean nchw = "NCHW".equals(spec.layout);
        int plane = h * w;
        for (int i = 0; i < plane; i++) {
            int p = img.pixels[i];
            int[] ch = {(p >> 16) & 0xFF, (p >> 8) & 0xFF, p & 0xFF};
            for (int c = 0; c < 3; c++) {
                float v = (float) ch[c] * scale;
                v = v - mean[c];
                v = v / std[c];
                out[nchw ? c * plane + i : 3 * i + c] = v;
            }
        }
        return out;
    }

    /** The whole post-decode pipeline: upright RGB -> float32 tensor in the manifest layout. */
    public static float[] run(RgbImage upright, ModelManifest.InputSpec spec) {
        RgbImage img = resizeAndCrop(upright, spec);
        if (img.width != spec.width || img.height != spec.height) {
            throw new IllegalStateException("preprocessing produced " + img.width + "x" + img.height
                    + ", the model expects " + spec.width + "x" + spec.height);
        }
        return normalize(img, spec);
    }

    /**
     * Affine quantization with round-half-even and saturation (TFLite's and numpy's rule), for int8/uint8 inputs.
     */
    public static byte[] quantize(float[] x, ModelManifest.Quantization q, String dtype) {
        int lo = "uint8".equals(dtype) ? 0 : -128;
        int hi = "uint8".equals(dtype) ? 255 : 127;
        float s = (float) q.scale;
        byte[] out = new byte[x.length];
        for (int i = 0; i < x.length; i++) {
            float r = (float) Math.rint(x[i] / s) + q.zeroPoint;
            int v = r < lo ? lo : (r > hi ? hi : (int) r);
            out[i] = (byte) v;
        }
        return out;
    }

    /** float32 -> IEEE half bits with round-to-nearest-even (numpy's astype(float16)). */
    public static short toHalf(float f) {
        int bits = Float.floatToIntBits(f);
        int sign = (bits >>> 16) & 0x8000;
        int exp = (bits >>> 23) & 0xFF;
        int mant = bits & 0x7FFFFF;
        if (exp == 0xFF) { // inf / nan
            return (short) (sign | 0x7C00 | (mant != 0 ? 0x200 : 0));
        }
        int e = exp - 127 + 15;
        if (e >= 0x1F) {
            return (short) (sign | 0x7C00);
        }
        if (e <= 0) { // subnormal half (or zero)
            if (e < -10) {
                return (short) sign;
            }
            int m = mant | 0x800000;
            int shift = 14 - e;
            int half = m >> shift;
            int rem = m & ((1 << shift) - 1);
            int mid = 1 << (shift - 1);
            if (rem > mid || (rem == mid && (half & 1) != 0)) {
                half++;
            }
            return (short) (sign | half);
        }
        int half = (e << 10) | (mant >> 13);
        int rem = mant & 0x1FFF;
        if (rem > 0x1000 || (rem == 0x1000 && (half & 1) != 0)) {
            half++; // may carry into the exponent, which is the correct rounding up to the next binade / inf
        }
        return (short) (sign | half);
    }

    /** IEEE half bits -> float32 (exact). */
    public static float fromHalf(short h) {
        int s = (h & 0x8000) << 16;
        int e = (h >>> 10) & 0x1F;
        int m = h & 0x3FF;
        if (e == 0) {
            float v = m * (1.0f / (1 << 24));
            return s != 0 ? -v : v;
        }
        if (e == 0x1F) {
            return Float.intBitsToFloat(s | 0x7F800000 | (m << 13));
        }
        return Float.intBitsToFloat(s | ((e - 15 + 127) << 23) | (m << 13));
    }

    /**
     * The JPEG DCT downscale factor (1, 2, 4 or 8) the decoder may use, as Pillow's {@code draft} picks it.
     *
     * <p>The runtime asks for at least {@code ceil(resize * draft_factor)} pixels per side of the upright image;
     * Pillow takes the largest of 8, 4, 2, 1 not above {@code min(W // w, H // h)} of the stored image. Android's
     * {@code inSampleSize} uses the same libjpeg-turbo DCT scaling.
     *
     * @param storedW stored (not yet rotated) width
     * @param storedH stored height
     * @param orientation EXIF orientation (5..8 swap the axes)
     * @return 1 when the manifest forbids draft decoding
     */
    public static int draftScale(int storedW, int storedH, int orientation, ModelManifest.InputSpec spec) {
        if (!spec.draft) {
            return 1;
        }
        int w = (int) Math.ceil(spec.resizeWidth * spec.draftFactor);
        int h = (int) Math.ceil(spec.resizeHeight * spec.draftFactor);
        if (Exif.swapsAxes(orientation)) {
            int t = w;
            w = h;
            h = t;
        }
        int limit = Math.min(storedW / w, storedH / h);
        int[] candidates = {8, 4, 2, 1};
        for (int s : candidates) {
            if (s <= limit) {
                return s;
            }
        }
        return 1;
    }
}
