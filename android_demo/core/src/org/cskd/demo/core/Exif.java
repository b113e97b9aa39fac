package org.cskd.demo.core;

/**
 * EXIF orientation: reading the tag from JPEG, PNG and WebP bytes, and turning the pixels upright.
 *
 * <p>Mirrors {@code PIL.ImageOps.exif_transpose} as used by the Python runtime: the first EXIF block of the file
 * is read, tag 0x0112 of IFD0 gives the orientation, values other than 2..8 leave the image as it is. Done in
 * plain Java (not android.media.ExifInterface) so the very same code is unit-tested on the JVM.
 */
public final class Exif {
    /** Returned by {@link #readOrientation} when the container is not JPEG, PNG or WebP (e.g. HEIF). */
    public static final int UNKNOWN_FORMAT = 0;

    private Exif() {}

    /**
     * The EXIF orientation (1..8) of an encoded photo; 1 when it has no (readable) tag.
     *
     * @return 1..8, or {@link #UNKNOWN_FORMAT} if the bytes are not a JPEG, PNG or WebP file
     */
    public static int readOrientation(byte[] data) {
        byte[] tiff;
        if (data.length >= 3 && (data[0] & 0xFF) == 0xFF && (data[1] & 0xFF) == 0xD8) {
            tiff = jpegExif(data);
        } else if (data.length >= 8 && (data[0] & 0xFF) == 0x89 && data[1] == 'P' && data[2] == 'N' && data[3] == 'G') {
            tiff = pngExif(data);
        } else if (data.length >= 12 && data[0] == 'R' && data[1] == 'I' && data[2] == 'F' && data[3] == 'F'
                && data[8] == 'W' && data[9] == 'E' && data[10] == 'B' && data[11] == 'P') {
            tiff = webpExif(data);
        } else {
            return UNKNOWN_FORMAT;
        }
        if (tiff == null) {
            return 1;
        }
        int o = tiffOrientation(tiff);
        return o >= 1 && o <= 8 ? o : 1;
    }

    private static int u16be(byte[] b, int o) {
        return ((b[o] & 0xFF) << 8) | (b[o + 1] & 0xFF);
    }

    private static int u32be(byte[] b, int o) {
        return ((b[o] & 0xFF) << 24) | ((b[o + 1] & 0xFF) << 16) | ((b[o + 2] & 0xFF) << 8) | (b[o + 3] & 0xFF);
    }

    private static int u32le(byte[] b, int o) {
        return (b[o] & 0xFF) | ((b[o + 1] & 0xFF) << 8) | ((b[o + 2] & 0xFF) << 16) | ((b[o + 3] & 0xFF) << 24);
    }

    private static byte[] stripExifHeader(byte[] b, int off, int len) {
        // "Exif\0\0" precedes the TIFF header in JPEG APP1 and sometimes in PNG/WebP chunks.
        if (len >= 6 && b[off] == 'E' && b[off + 1] == 'x' && b[off + 2] == 'i' && b[off + 3] == 'f'
                && b[off + 4] == 0 && b[off + 5] == 0) {
            off += 6;
            len -= 6;
        }
        byte[] out = new byte[len];
        System.arraycopy(b, off, out, 0, len);
        return out;
    }

    private static byte[] jpegExif(byte[] b) {
        int pos = 2;
        while (pos + 4 <= b.length) {
            if ((b[pos] & 0xFF) != 0xFF) {
                return null; // not at a marker: corrupt header, give up like a reader that finds no EXIF
            }
            int marker = b[pos + 1] & 0xFF;
            if (marker == 0xFF) { // fill byte
                pos++;
                continue;
            }
            if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) {
                pos += 2;
                continue;
            }
            if (marker == 0xDA || marker == 0xD9) { // start of scan / end of image: no EXIF before pixels
                return null;
            }
            int len = u16be(b, pos + 2);
            if (len < 2 || pos + 2 + len > b.length) {
                return null;
            }
            int start = pos + 4;
            int n = len - 2;
            if (marker == 0xE1 && n >= 6 && b[start] == 'E' && b[start + 1] == 'x' && b[start + 2] == 'i'
                    && b[start + 3] == 'f' && b[start + 4] == 0 && b[start + 5] == 0) {
                return stripExifHeader(b, start, n);
            }
            pos += 2 + len;
        }
        return null;
    }

    private static byte[] pngExif(byte[] b) {
        int pos = 8;
        while (pos + 8 <= b.length) {
            int len = u32be(b, pos);
            if (len < 0 || pos + 12L + len > b.length) {
                return null;
            }
            if (b[pos + 4] == 'e' && b[pos + 5] == 'X' && b[pos + 6] == 'I' && b[pos + 7] == 'f') {
                return stripExifHeader(b, pos + 8, len);
            }
            if (b[pos + 4] == 'I' && b[pos + 5] == 'E' && b[pos + 6] == 'N' && b[pos + 7] == 'D') {
                return null;
            }
            pos += 12 + len;
        }
        return null;
    }

    private static byte[] webpExif(byte[] b) {
        int pos = 12;
        while (pos + 8 <= b.length) {
            int len = u32le(b, pos + 4);
            if (len < 0 || pos + 8L + len > b.length) {
                return null;
            }
            if (b[pos] == 'E' && b[pos + 1] == 'X' && b[pos + 2] == 'I' && b[pos + 3] == 'F') {
                return stripExifHeader(b, pos + 8, len);
            }
            pos += 8 + len + (len & 1);
        }
        return null;
    }

    /** Orientation tag of IFD0 in a TIFF structure, or 1 if absent or unreadable. */
    static int tiffOrientation(byte[] t) {
        if (t.length < 8) {
            return 1;
        }
        boolean le;
        if (t[0] == 'I' && t[1] == 'I') {
            le = true;
        } else if (t[0] == 'M' && t[1] == 'M') {
            le = false;
        } else {
            return 1;
        }
        int ifd = u32(t, 4, le);
        if (ifd < 8 || ifd + 2 > t.length) {
            return 1;
        }
        int count = u16(t, ifd, le);
        for (int i = 0; i < count; i++) {
            int e = ifd + 2 + 12 * i;
            if (e + 12 > t.length) {
                return 1;
            }
            if (u16(t, e, le) != 0x0112) {
                continue;
            }
            int type = u16(t, e + 2, le);
            if (type == 3) { // SHORT, stored in the first two bytes of the value field
                return u16(t, e + 8, le);
            }
            if (type == 4) { // LONG (non-standard but seen in the wild)
                return u32(t, e + 8, le);
            }
            return 1;
        }
        return 1;
    }

    private static int u16(byte[] b, int o, boolean le) {
        return le ? ((b[o] & 0xFF) | ((b[o + 1] & 0xFF) << 8)) : u16be(b, o);
    }

    private static int u32(byte[] b, int o, boolean le) {
        return le ? u32le(b, o) : u32be(b, o);
    }

    /** Whether this orientation swaps width and height (5..8). */
    public static boolean swapsAxes(int orientation) {
        return orientation >= 5 && orientation <= 8;
    }

    /**
     * The upright image for a stored image with this EXIF orientation (Pillow's transpose per value: 2 mirror,
     * 3 rotate 180, 4 flip, 5 transpose, 6 rotate 270 = 90 clockwise, 7 transverse, 8 rotate 90).
     */
    public static RgbImage applyOrientation(RgbImage in, int orientation) {
        if (orientation < 2 || orientation > 8) {
            return in;
        }
        int w = in.width;
        int h = in.height;
        int[] src = in.pixels;
        boolean swap = swapsAxes(orientation);
        int ow = swap ? h : w;
        int oh = swap ? w : h;
        int[] out = new int[src.length];
        for (int y = 0; y < oh; y++) {
            int row = y * ow;
            for (int x = 0; x < ow; x++) {
                int sx;
                int sy;
                switch (orientation) {
                    case 2: sx = w - 1 - x; sy = y; break;
                    case 3: sx = w - 1 - x; sy = h - 1 - y; break;
                    case 4: sx = x; sy = h - 1 - y; break;
                    case 5: sx = y; sy = x; break;
                    case 6: sx = y; sy = h - 1 - x; break;
                    case 7: sx = w - 1 - y; sy = h - 1 - x; break;
                    default: sx = w - 1 - y; sy = x; break; // 8
                }
                out[row + x] = src[sy * w + sx];
            }
        }
        return new RgbImage(ow, oh, out);
    }
}
