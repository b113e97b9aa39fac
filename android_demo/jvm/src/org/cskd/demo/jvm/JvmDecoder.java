package org.cskd.demo.jvm;

import java.awt.image.BufferedImage;
import java.awt.image.ColorModel;
import java.awt.image.IndexColorModel;
import java.awt.image.Raster;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.util.Iterator;
import javax.imageio.ImageIO;
import javax.imageio.ImageReadParam;
import javax.imageio.ImageReader;
import javax.imageio.stream.ImageInputStream;
import org.cskd.demo.core.PhotoDecoder;

/**
 * The desktop stand-in for Android's BitmapFactory: ImageIO, reading raw samples from the raster.
 *
 * <p>{@code BufferedImage.getRGB} would run greyscale through a linear-gray to sRGB colour conversion; raw
 * samples are what Pillow and Android hand over. Lossless formats decode exactly; JPEG pixels and the draft
 * (here plain subsampling instead of DCT scaling) differ from libjpeg-turbo's, which is why parity is measured
 * on PNGs.
 */
public final class JvmDecoder implements PhotoDecoder {
    private static ImageReader reader(ImageInputStream in) throws IOException {
        Iterator<ImageReader> it = ImageIO.getImageReaders(in);
        if (!it.hasNext()) {
            throw new IOException("not a recognised image format");
        }
        ImageReader r = it.next();
        r.setInput(in, true, true);
        return r;
    }

    @Override
    public int[] size(byte[] data) throws IOException {
        try (ImageInputStream in = ImageIO.createImageInputStream(new ByteArrayInputStream(data))) {
            ImageReader r = reader(in);
            try {
                return new int[] {r.getWidth(0), r.getHeight(0)};
            } finally {
                r.dispose();
            }
        }
    }

    @Override
    public Decoded decode(byte[] data, int jpegScale) throws IOException {
        BufferedImage img;
        try (ImageInputStream in = ImageIO.createImageInputStream(new ByteArrayInputStream(data))) {
            ImageReader r = reader(in);
            try {
                ImageReadParam param = r.getDefaultReadParam();
                if (jpegScale > 1 && "jpeg".equalsIgnoreCase(r.getFormatName())) {
                    param.setSourceSubsampling(jpegScale, jpegScale, 0, 0);
                }
                img = r.read(0, param);
            } finally {
                r.dispose();
            }
        }
        int w = img.getWidth();
        int h = img.getHeight();
        int[] argb = new int[w * h];
        ColorModel cm = img.getColorModel();
        Raster ras = img.getRaster();
        int bands = ras.getNumBands();
        if (cm instanceof IndexColorModel || img.getType() == BufferedImage.TYPE_3BYTE_BGR
                || img.getType() == BufferedImage.TYPE_INT_RGB) {
            img.getRGB(0, 0, w, h, argb, 0, w); // palette lookups and sRGB RGB involve no conversion
            return new Decoded(w, h, argb);
        }
        int bits = cm.getComponentSize(0);
        int shift = bits > 8 ? bits - 8 : 0;
        int[] px = new int[bands];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                ras.getPixel(x, y, px);
                int a = 255;
                int r;
                int g;
                int b;
                if (bands <= 2) {
                    r = g = b = px[0] >> shift;
                    if (bands == 2) {
                        a = px[1] >> shift;
                    }
                } else {
                    r = px[0] >> shift;
                    g = px[1] >> shift;
                    b = px[2] >> shift;
                    if (bands == 4) {
                        a = px[3] >> shift;
                    }
                }
                argb[y * w + x] = (a << 24) | (r << 16) | (g << 8) | b;
            }
        }
        return new Decoded(w, h, argb);
    }

    @Override
    public int fallbackOrientation(byte[] data) {
        return 1;
    }
}
