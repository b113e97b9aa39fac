package org.cskd.demo;

import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.media.ExifInterface;
import android.os.Build;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.lang.reflect.Field;
import org.cskd.demo.core.PhotoDecoder;

/**
 * BitmapFactory decoding that hands the core the same pixels Pillow would: straight (not premultiplied) alpha,
 * no colour-management conversion, JPEG DCT downscaling through {@code inSampleSize} (Pillow's draft).
 */
final class AndroidDecoder implements PhotoDecoder {
    private final File scratch;

    /** @param scratch a cache file for containers only android.media.ExifInterface can read (HEIF) */
    AndroidDecoder(File scratch) {
        this.scratch = scratch;
    }

    @Override
    public int[] size(byte[] data) throws IOException {
        BitmapFactory.Options o = new BitmapFactory.Options();
        o.inJustDecodeBounds = true;
        BitmapFactory.decodeByteArray(data, 0, data.length, o);
        if (o.outWidth <= 0 || o.outHeight <= 0) {
            throw new IOException("not a recognised image format");
        }
        return new int[] {o.outWidth, o.outHeight};
    }

    @Override
    public Decoded decode(byte[] data, int jpegScale) throws IOException {
        BitmapFactory.Options o = new BitmapFactory.Options();
        o.inPreferredConfig = Bitmap.Config.ARGB_8888;
        o.inPremultiplied = false;
        o.inSampleSize = Math.max(1, jpegScale);
        keepEmbeddedColorSpace(o);
        Bitmap bmp;
        try {
            bmp = BitmapFactory.decodeByteArray(data, 0, data.length, o);
        } catch (OutOfMemoryError e) {
            throw new IOException("out of memory while decoding a " + data.length + "-byte photo");
        }
        if (bmp == null) {
            throw new IOException("not a recognised image format (or a truncated file)");
        }
        try {
            int w = bmp.getWidth();
            int h = bmp.getHeight();
            int[] argb = new int[w * h];
            bmp.getPixels(argb, 0, w, 0, 0, w, h);
            return new Decoded(w, h, argb);
        } finally {
            bmp.recycle();
        }
    }

    /**
     * From API 26 BitmapFactory converts photos with an ICC profile (Display P3 from many cameras) to sRGB;
     * Pillow keeps the stored values, and so must we. The field is newer than the API we compile against.
     */
    private static void keepEmbeddedColorSpace(BitmapFactory.Options o) {
        if (Build.VERSION.SDK_INT < 26) {
            return;
        }
        try {
            Field f = BitmapFactory.Options.class.getField("inPreferredColorSpace");
            f.set(o, null);
        } catch (ReflectiveOperationException ignored) {
            // Older framework without the field: nothing to turn off.
        }
    }

    @Override
    public int fallbackOrientation(byte[] data) {
        try {
            FileOutputStream out = new FileOutputStream(scratch);
            try {
                out.write(data);
            } finally {
                out.close();
            }
            int o = new ExifInterface(scratch.getPath()).getAttributeInt(ExifInterface.TAG_ORIENTATION, 1);
            return o >= 1 && o <= 8 ? o : 1;
        } catch (IOException e) {
            return 1;
        } finally {
            //noinspection ResultOfMethodCallIgnored
            scratch.delete();
        }
    }
}
