package org.cskd.demo.core;

import java.io.IOException;

/** Platform image decoding (Android BitmapFactory, JVM ImageIO): the only step the core cannot do itself. */
public interface PhotoDecoder {
    /** Decoded straight-alpha pixels as stored in the file (EXIF orientation not applied). */
    final class Decoded {
        public final int width;
        public final int height;
        /** {@code 0xAARRGGBB}, not premultiplied. */
        public final int[] argb;

        public Decoded(int width, int height, int[] argb) {
            this.width = width;
            this.height = height;
            this.argb = argb;
        }
    }

    /** Stored width and height read from the header, without decoding pixels. */
    int[] size(byte[] data) throws IOException;

    /**
     * Decodes the photo. {@code jpegScale} (1, 2, 4, 8) asks a JPEG decoder to downscale in the DCT, like
     * Pillow's draft mode; other formats ignore it.
     */
    Decoded decode(byte[] data, int jpegScale) throws IOException;

    /** Orientation of containers {@link Exif} does not parse (HEIF...), or 1. */
    int fallbackOrientation(byte[] data);
}
