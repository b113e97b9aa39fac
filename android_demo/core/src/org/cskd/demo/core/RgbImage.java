package org.cskd.demo.core;

/**
 * An upright 8-bit RGB image, one int per pixel ({@code 0xRRGGBB}), rows top to bottom.
 *
 * <p>Platform decoders (Android's BitmapFactory, the JVM's ImageIO) hand over straight-alpha ARGB pixels;
 * {@link #fromArgb} composites transparency exactly as the Python runtime does (Pillow's paste with an alpha
 * mask), so the rest of the pipeline only ever sees opaque RGB.
 */
public final class RgbImage {
    public final int width;
    public final int height;
    /** {@code width * height} pixels, {@code 0xRRGGBB}. */
    public final int[] pixels;

    public RgbImage(int width, int height, int[] pixels) {
        if (width <= 0 || height <= 0) {
            throw new IllegalArgumentException("invalid image size " + width + "x" + height);
        }
        if (pixels.length != width * height) {
            throw new IllegalArgumentException(
                    "pixel buffer has " + pixels.length + " entries for a " + width + "x" + height + " image");
        }
        this.width = width;
        this.height = height;
        this.pixels = pixels;
    }

    /**
     * Opaque RGB from straight (not premultiplied) ARGB pixels, compositing onto {@code background}.
     *
     * <p>Uses Pillow's blend {@code (bg * (255 - a) + fg * a)} divided by 255 with its rounding
     * ({@code t = v + 128; (t + (t >> 8)) >> 8}), so semi-transparent pixels match the Python runtime exactly.
     *
     * @param argb pixels as {@code 0xAARRGGBB}; not modified
     * @param background RGB triple in 0..255
     */
    public static RgbImage fromArgb(int[] argb, int width, int height, int[] background) {
        int[] out = new int[argb.length];
        int br = background[0];
        int bgc = background[1];
        int bb = background[2];
        for (int i = 0; i < argb.length; i++) {
            int p = argb[i];
            int a = p >>> 24;
            if (a == 255) {
                out[i] = p & 0xFFFFFF;
            } else {
                int r = blend(br, (p >> 16) & 0xFF, a);
                int g = blend(bgc, (p >> 8) & 0xFF, a);
                int b = blend(bb, p & 0xFF, a);
                out[i] = (r << 16) | (g << 8) | b;
            }
        }
        return new RgbImage(width, height, out);
    }

    private static int blend(int under, int over, int alpha) {
        int t = under * (255 - alpha) + over * alpha + 128;
        return ((t >> 8) + t) >> 8;
    }

    /** Interleaved RGB bytes, row-major (the layout of a numpy HxWx3 uint8 array). */
    public byte[] toRgbBytes() {
        byte[] out = new byte[pixels.length * 3];
        for (int i = 0; i < pixels.length; i++) {
            int p = pixels[i];
            out[3 * i] = (byte) (p >> 16);
            out[3 * i + 1] = (byte) (p >> 8);
            out[3 * i + 2] = (byte) p;
        }
        return out;
    }

    /** The inverse of {@link #toRgbBytes()}. */
    public static RgbImage fromRgbBytes(byte[] rgb, int width, int height) {
        if (rgb.length != width * height * 3) {
            throw new IllegalArgumentException("expected " + width * height * 3 + " bytes, got " + rgb.length);
        }
        int[] px = new int[width * height];
        for (int i = 0; i < px.length; i++) {
            px[i] = ((rgb[3 * i] & 0xFF) << 16) | ((rgb[3 * i + 1] & 0xFF) << 8) | (rgb[3 * i + 2] & 0xFF);
        }
        return new RgbImage(width, height, px);
    }

    /** The centre-free crop {@code [left, left + w) x [top, top + h)}; must lie inside the image. */
    public RgbImage crop(int left, int top, int w, int h) {
        if (left < 0 || top < 0 || left + w > width || top + h > height) {
            throw new IllegalArgumentException("crop " + w + "x" + h + "+" + left + "+" + top
                    + " outside a " + width + "x" + height + " image");
        }
        int[] out = new int[w * h];
        for (int y = 0; y < h; y++) {
            System.arraycopy(pixels, (top + y) * width + left, out, y * w, w);
        }
        return new RgbImage(w, h, out);
    }
}
