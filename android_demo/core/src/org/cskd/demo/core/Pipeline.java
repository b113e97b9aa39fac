package org.cskd.demo.core;

import ai.onnxruntime.OrtException;
import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;

/** Photo bytes -> scores with timings: decode, EXIF orientation, preprocessing and inference. */
public final class Pipeline {
    private final PhotoDecoder decoder;
    private final OrtModel model;

    public Pipeline(PhotoDecoder decoder, OrtModel model) {
        this.decoder = decoder;
        this.model = model;
    }

    /** One scored photo and where the time went. */
    public static final class Result {
        public final Scores scores;
        public final int orientation;
        public final int jpegScale;
        public final int decodedWidth;
        public final int decodedHeight;
        /** Decoding the file, EXIF orientation and alpha compositing. */
        public final double decodeMs;
        /** Resize, crop, normalisation. */
        public final double preprocessMs;
        /** The ONNX Runtime call plus postprocessing. */
        public final double inferenceMs;
        /** The decoded, upright photo (for a preview). */
        public final RgbImage upright;

        Result(Scores scores, int orientation, int jpegScale, RgbImage upright, double decodeMs, double preprocessMs,
                double inferenceMs) {
            int w = upright.width;
            int h = upright.height;
            this.upright = upright;
            this.scores = scores;
            this.orientation = orientation;
            this.jpegScale = jpegScale;
            this.decodedWidth = w;
            this.decodedHeight = h;
            this.decodeMs = decodeMs;
            this.preprocessMs = preprocessMs;
            this.inferenceMs = inferenceMs;
        }

        public double totalMs() {
            return decodeMs + preprocessMs + inferenceMs;
        }

        public Map<String, Object> toMap() {
            Map<String, Object> m = scores.toMap();
            m.put("orientation", orientation);
            m.put("jpeg_scale", jpegScale);
            m.put("decoded_size", java.util.Arrays.asList((Object) decodedWidth, decodedHeight));
            Map<String, Object> t = new LinkedHashMap<String, Object>();
            t.put("decode_ms", decodeMs);
            t.put("preprocess_ms", preprocessMs);
            t.put("inference_ms", inferenceMs);
            m.put("timings", t);
            return m;
        }
    }

    /** The upright, opaque RGB image the model's preprocessing starts from, plus decode facts. */
    public static final class Upright {
        public final RgbImage image;
        public final int orientation;
        public final int jpegScale;

        Upright(RgbImage image, int orientation, int jpegScale) {
            this.image = image;
            this.orientation = orientation;
            this.jpegScale = jpegScale;
        }
    }

    /** Decodes, applies the EXIF orientation and composites transparency (the Python {@code load_rgb}). */
    public static Upright decodeUpright(byte[] data, PhotoDecoder decoder, ModelManifest.InputSpec spec)
            throws IOException {
        if (data.length == 0) {
            throw new IOException("empty file (0 bytes)");
        }
        int orientation = Exif.readOrientation(data);
        if (orientation == Exif.UNKNOWN_FORMAT) {
            orientation = decoder.fallbackOrientation(data);
        }
        int scale = 1;
        boolean jpeg = data.length > 2 && (data[0] & 0xFF) == 0xFF && (data[1] & 0xFF) == 0xD8;
        if (jpeg && spec.draft) {
            int[] size = decoder.size(data);
            scale = Preprocess.draftScale(size[0], size[1], orientation, spec);
        }
        PhotoDecoder.Decoded d = decoder.decode(data, scale);
        RgbImage rgb = RgbImage.fromArgb(d.argb, d.width, d.height, spec.background);
        return new Upright(Exif.applyOrientation(rgb, orientation), orientation, scale);
    }

    /** Scores encoded photo bytes. */
    public Result score(byte[] data) throws IOException, OrtException {
        long t0 = System.nanoTime();
        Upright up = decodeUpright(data, decoder, model.manifest.input);
        long t1 = System.nanoTime();
        float[] x = Preprocess.run(up.image, model.manifest.input);
        long t2 = System.nanoTime();
        Scores s = model.score(x);
        long t3 = System.nanoTime();
        return new Result(s, up.orientation, up.jpegScale, up.image, (t1 - t0) / 1e6,
                (t2 - t1) / 1e6, (t3 - t2) / 1e6);
    }

    public OrtModel model() {
        return model;
    }
}
