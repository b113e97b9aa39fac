package org.cskd.demo.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The model contract embedded in every exported model (ONNX metadata key {@value #METADATA_KEY}).
 *
 * <p>Java mirror of {@code cskd_runtime.manifest.Manifest}: the same JSON, the same validation rules, so a model
 * that the Python runtime refuses is refused here too, with every problem listed at once.
 */
public final class ModelManifest {
    /** Metadata key under which the exporter stores the manifest JSON. */
    public static final String METADATA_KEY = "cskd.manifest";
    /** Highest manifest schema version this code understands. */
    public static final int SCHEMA_VERSION = 1;

    static final List<String> INTERPOLATIONS =
            Arrays.asList("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos");
    static final List<String> RESIZE_MODES = Arrays.asList("stretch", "shorter_side");
    static final List<String> CROP_MODES = Arrays.asList("center", "none");
    static final List<String> LAYOUTS = Arrays.asList("NCHW", "NHWC");
    static final List<String> DTYPES = Arrays.asList("float32", "float16", "int8", "uint8");
    static final List<String> ACTIVATIONS = Arrays.asList("softmax", "none");

    /** Thrown for an invalid manifest; {@link #problems} lists every issue found. */
    public static final class ManifestException extends IllegalArgumentException {
        public final List<String> problems;

        ManifestException(List<String> problems, String source) {
            super("invalid cskd manifest" + (source != null ? " in " + source : "") + ": " + join(problems));
            this.problems = Collections.unmodifiableList(problems);
        }

        private static String join(List<String> items) {
            StringBuilder sb = new StringBuilder();
            for (String s : items) {
                if (sb.length() > 0) {
                    sb.append("; ");
                }
                sb.append(s);
            }
            return sb.toString();
        }
    }

    /** Affine quantization {@code real = scale * (q - zeroPoint)}. */
    public static final class Quantization {
        public final double scale;
        public final int zeroPoint;

        Quantization(double scale, int zeroPoint) {
            this.scale = scale;
            this.zeroPoint = zeroPoint;
        }
    }

    /** How a decoded photo becomes the input tensor; see {@code InputSpec} in the Python runtime. */
    public static final class InputSpec {
        public int height;
        public int width;
        public int resizeHeight;
        public int resizeWidth;
        public String resizeMode;
        public String cropMode;
        public String interpolation;
        public int[] background = {255, 255, 255};
        public double scale;
        public double[] mean;
        public double[] std;
        public String layout;
        public String dtype;
        public Quantization quantization;
        public boolean draft = true;
        public double draftFactor = 4.0;

        /** Input tensor shape for a batch of one in this spec's layout. */
        public long[] shape() {
            if ("NCHW".equals(layout)) {
                return new long[] {1, 3, height, width};
            }
            return new long[] {1, height, width, 3};
        }
    }

    /** How to read the model output. */
    public static final class OutputSpec {
        public double[] bins;
        public String activation = "none";
        public String dtype = "float32";
        public Quantization quantization;
    }

    /** Percentile calibration of the mean score against a reference population. */
    public static final class Calibration {
        public String reference;
        public String method;
        public double[] quantiles;
        public String target = "";
        public double[] targetQuantiles = new double[0];

        /** Percentile (0..100) of {@code score}, piecewise linear in the quantile table (as in Python). */
        public double percentile(double score) {
            double[] q = quantiles;
            if (score <= q[0]) {
                return 0.0;
            }
            if (score >= q[q.length - 1]) {
                return 100.0;
            }
            int lo = 0;
            int hi = q.length - 1;
            while (hi - lo > 1) {
                int mid = (lo + hi) / 2;
                if (q[mid] <= score) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            double span = q[hi] - q[lo];
            double frac = span <= 0 ? 0.0 : (score - q[lo]) / span;
            return 100.0 * (lo + frac) / (q.length - 1);
        }

        /** The score on the target scale at the same percentile, or null without a target. */
        public Double toTarget(double score) {
            if (targetQuantiles.length == 0) {
                return null;
            }
            double pos = percentile(score) / 100.0 * (targetQuantiles.length - 1);
            int lo = Math.min((int) pos, targetQuantiles.length - 2);
            double frac = pos - lo;
            return targetQuantiles[lo] * (1 - frac) + targetQuantiles[lo + 1] * frac;
        }
    }

    public String name;
    public String version;
    public String architecture = "";
    public final InputSpec input = new InputSpec();
    public final OutputSpec output = new OutputSpec();
    /** Null when the model carries no calibration. */
    public Calibration calibration;
    /** The JSON text this manifest was parsed from. */
    public String json;

    private ModelManifest() {}

    /**
     * Parses and validates a manifest.
     *
     * @param text the manifest JSON
     * @param source where it came from, for error messages (a model file name)
     * @throws ManifestException listing every problem
     */
    public static ModelManifest parse(String text, String source) {
        Object root;
        try {
            root = Json.parse(text);
        } catch (Json.ParseException ex) {
            throw new ManifestException(Collections.singletonList("not valid JSON (" + ex.getMessage() + ")"), source);
        }
        List<String> p = new ArrayList<String>();
        ModelManifest m = new ModelManifest();
        m.json = text;
        if (!(root instanceof Map)) {
            p.add("expected a JSON object");
            throw new ManifestException(p, source);
        }
        Map<?, ?> d = (Map<?, ?>) root;
        if (!"cskd.manifest".equals(d.get("schema"))) {
            p.add("'schema' must be 'cskd.manifest' (got " + d.get("schema") + ")");
        }
        Object sv = d.get("schema_version");
        if (!isInt(sv)) {
            p.add("'schema_version' is missing or not an integer");
        } else if (((Double) sv).intValue() > SCHEMA_VERSION) {
            p.add("schema_version " + ((Double) sv).intValue() + " is newer than this app understands ("
                    + SCHEMA_VERSION + "); update the app");
        } else if (((Double) sv).intValue() < 1) {
            p.add("schema_version " + ((Double) sv).intValue() + " is not valid");
        }
        Map<?, ?> model = section(d, "model", p);
        Map<?, ?> inp = section(d, "input", p);
        Map<?, ?> out = section(d, "output", p);
        if (model == null || inp == null || out == null) {
            throw new ManifestException(p, source);
        }
        m.name = str(model.get("name"));
        m.version = str(model.get("version"));
        m.architecture = model.get("architecture") instanceof String ? (String) model.get("architecture") : "";
        if (m.name == null || m.name.isEmpty()) {
            p.add("model.name is missing or empty");
        }
        if (m.version == null || m.version.isEmpty()) {
            p.add("model.version is missing or empty");
        }
        parseInput(inp, m.input, p);
        parseOutput(out, m.output, p);
        Object cal = d.get("calibration");
        if (cal instanceof Map) {
            m.calibration = parseCalibration((Map<?, ?>) cal, p);
        } else if (cal != null) {
            p.add("calibration must be an object or null");
        }
        if (!p.isEmpty()) {
            throw new ManifestException(p, source);
        }
        return m;
    }

    private static void parseInput(Map<?, ?> inp, InputSpec s, List<String> p) {
        String[] required = {"height", "width", "resize_height", "resize_width", "resize_mode", "crop_mode",
            "interpolation", "mean", "std", "scale", "layout", "dtype"};
        boolean missing = false;
        for (String k : required) {
            if (!inp.containsKey(k)) {
                p.add("input." + k + " is missing");
                missing = true;
            }
        }
        if (missing) {
            return;
        }
        s.height = positiveInt(inp, "height", p);
        s.width = positiveInt(inp, "width", p);
        s.resizeHeight = positiveInt(inp, "resize_height", p);
        s.resizeWidth = positiveInt(inp, "resize_width", p);
        s.resizeMode = choice(inp, "resize_mode", RESIZE_MODES, p);
        s.cropMode = choice(inp, "crop_mode", CROP_MODES, p);
        s.interpolation = choice(inp, "interpolation", INTERPOLATIONS, p);
        s.layout = choice(inp, "layout", LAYOUTS, p);
        s.dtype = choice(inp, "dtype", DTYPES, p);
        Object cs = inp.containsKey("color_space") ? inp.get("color_space") : "RGB";
        if (!"RGB".equals(cs)) {
            p.add("input.color_space must be RGB (got " + cs + ")");
        }
        Object aa = inp.containsKey("antialias") ? inp.get("antialias") : Boolean.TRUE;
        if (!Boolean.TRUE.equals(aa)) {
            p.add("input.antialias must be true: the contract follows Pillow's antialiased resampling");
        }
        s.mean = triple(inp.get("mean"), "input.mean", p);
        s.std = triple(inp.get("std"), "input.std", p);
        if (s.std != null) {
            for (double v : s.std) {
                if (v == 0) {
                    p.add("input.std must not contain 0");
                    break;
                }
            }
        }
        Object scale = inp.get("scale");
        if (!isNum(scale) || (Double) scale <= 0) {
            p.add("input.scale must be a positive number (got " + scale + ")");
        } else {
            s.scale = (Double) scale;
        }
        if (inp.containsKey("background")) {
            Object bg = inp.get("background");
            boolean ok = bg instanceof List && ((List<?>) bg).size() == 3;
            if (ok) {
                for (int i = 0; i < 3; i++) {
                    Object v = ((List<?>) bg).get(i);
                    if (!isInt(v) || (Double) v < 0 || (Double) v > 255) {
                        ok = false;
                    } else {
                        s.background[i] = ((Double) v).intValue();
                    }
                }
            }
            if (!ok) {
                p.add("input.background must be 3 integers in 0..255 (got " + bg + ")");
            }
        }
        if (inp.containsKey("draft")) {
            if (!(inp.get("draft") instanceof Boolean)) {
                p.add("input.draft must be true or false");
            } else {
                s.draft = (Boolean) inp.get("draft");
            }
        }
        if (inp.containsKey("draft_factor")) {
            Object df = inp.get("draft_factor");
            if (!isNum(df) || (Double) df < 1) {
                p.add("input.draft_factor must be a number >= 1 (got " + df + ")");
            } else {
                s.draftFactor = (Double) df;
            }
        }
        if (s.height > 0 && s.width > 0 && s.resizeHeight > 0 && s.resizeWidth > 0) {
            if ("shorter_side".equals(s.resizeMode) && s.resizeHeight != s.resizeWidth) {
                p.add("input.resize_mode 'shorter_side' needs resize_height == resize_width");
            }
            if ("none".equals(s.cropMode) && (s.resizeHeight != s.height || s.resizeWidth != s.width)) {
                p.add("input.crop_mode 'none' needs the resize size to equal the input size");
            }
            if (s.resizeHeight < s.height || s.resizeWidth < s.width) {
                p.add("input resize size must be at least the input (crop) size");
            }
        }
        s.quantization = quant(inp, s.dtype, "input", p);
    }

    private static void parseOutput(Map<?, ?> out, OutputSpec s, List<String> p) {
        Object bins = out.get("bins");
        boolean ok = bins instanceof List && ((List<?>) bins).size() >= 2;
        if (ok) {
            List<?> l = (List<?>) bins;
            s.bins = new double[l.size()];
            for (int i = 0; i < l.size(); i++) {
                if (!isNum(l.get(i))) {
                    ok = false;
                    break;
                }
                s.bins[i] = (Double) l.get(i);
                if (i > 0 && s.bins[i] <= s.bins[i - 1]) {
                    p.add("output.bins must be strictly increasing");
                    break;
                }
            }
        }
        if (!ok) {
            p.add("output.bins must be a list of at least 2 numbers (got " + bins + ")");
        }
        if (out.containsKey("activation")) {
            s.activation = choice(out, "activation", ACTIVATIONS, p);
        }
        if (out.containsKey("dtype")) {
            s.dtype = choice(out, "dtype", DTYPES, p);
        }
        s.quantization = quant(out, s.dtype, "output", p);
    }

    private static Calibration parseCalibration(Map<?, ?> c, List<String> p) {
        Calibration cal = new Calibration();
        cal.reference = str(c.get("reference"));
        cal.method = str(c.get("method"));
        cal.quantiles = numbers(c.get("quantiles"));
        if (cal.quantiles == null || cal.quantiles.length != 101) {
            p.add("calibration.quantiles must be 101 numbers");
            return null;
        }
        for (int i = 1; i < cal.quantiles.length; i++) {
            if (cal.quantiles[i] < cal.quantiles[i - 1]) {
                p.add("calibration.quantiles must be non-decreasing");
                return null;
            }
        }
        cal.target = c.get("target") instanceof String ? (String) c.get("target") : "";
        Object tq = c.get("target_quantiles");
        if (tq != null && !(tq instanceof List && ((List<?>) tq).isEmpty())) {
            cal.targetQuantiles = numbers(tq);
            if (cal.targetQuantiles == null || cal.targetQuantiles.length != 101) {
                p.add("calibration.target_quantiles must be empty or 101 numbers");
                return null;
            }
        }
        return cal;
    }

    // --------------------------------------------------------------------------------------------- helpers

    private static Map<?, ?> section(Map<?, ?> d, String key, List<String> p) {
        Object v = d.get(key);
        if (!(v instanceof Map)) {
            p.add("missing section '" + key + "'");
            return null;
        }
        return (Map<?, ?>) v;
    }

    private static boolean isNum(Object v) {
        return v instanceof Double && !((Double) v).isNaN() && !((Double) v).isInfinite();
    }

    private static boolean isInt(Object v) {
        return isNum(v) && (Double) v == Math.rint((Double) v);
    }

    private static String str(Object v) {
        return v instanceof String ? (String) v : null;
    }

    private static int positiveInt(Map<?, ?> m, String key, List<String> p) {
        Object v = m.get(key);
        if (!isInt(v) || (Double) v <= 0) {
            p.add("input." + key + " must be a positive integer (got " + v + ")");
            return 0;
        }
        return ((Double) v).intValue();
    }

    private static String choice(Map<?, ?> m, String key, List<String> allowed, List<String> p) {
        Object v = m.get(key);
        if (!(v instanceof String) || !allowed.contains(v)) {
            p.add(key + " must be one of " + allowed + " (got " + v + ")");
            return null;
        }
        return (String) v;
    }

    private static double[] triple(Object v, String what, List<String> p) {
        double[] out = numbers(v);
        if (out == null || out.length != 3) {
            p.add(what + " must be a list of 3 numbers (got " + v + ")");
            return null;
        }
        return out;
    }

    private static double[] numbers(Object v) {
        if (!(v instanceof List)) {
            return null;
        }
        List<?> l = (List<?>) v;
        double[] out = new double[l.size()];
        for (int i = 0; i < out.length; i++) {
            if (!isNum(l.get(i))) {
                return null;
            }
            out[i] = (Double) l.get(i);
        }
        return out;
    }

    private static Quantization quant(Map<?, ?> m, String dtype, String where, List<String> p) {
        Object q = m.get("quantization");
        boolean integer = "int8".equals(dtype) || "uint8".equals(dtype);
        if (q == null) {
            if (integer) {
                p.add(where + ".quantization is required for dtype " + dtype);
            }
            return null;
        }
        if (!(q instanceof Map)) {
            p.add(where + ".quantization must be an object");
            return null;
        }
        Object scale = ((Map<?, ?>) q).get("scale");
        Object zp = ((Map<?, ?>) q).get("zero_point");
        if (!isNum(scale) || (Double) scale <= 0 || !isInt(zp)) {
            p.add(where + ".quantization needs a positive scale and an integer zero_point");
            return null;
        }
        return new Quantization((Double) scale, ((Double) zp).intValue());
    }
}
