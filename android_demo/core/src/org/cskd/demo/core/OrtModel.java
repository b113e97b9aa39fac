package org.cskd.demo.core;

import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.ShortBuffer;
import java.util.Collections;
import java.util.HashMap;
import java.util.Map;

/**
 * A cskd model loaded in ONNX Runtime through its Java API: the class the app runs on the phone and the JVM
 * tests run here, against the same ORT version.
 *
 * <p>The manifest is read from the model's own metadata, checked against the real input tensor (like
 * {@code Manifest.check_against_tensor} in Python) and drives input casting and output postprocessing.
 */
public final class OrtModel implements AutoCloseable {
    /** Execution providers the app offers; "cpu" is ORT's default provider. */
    public static final String EP_CPU = "cpu";
    public static final String EP_XNNPACK = "xnnpack";
    public static final String EP_NNAPI = "nnapi";

    public final ModelManifest manifest;
    public final String inputName;
    public final String executionProvider;
    public final int threads;
    private final OrtEnvironment env;
    private final OrtSession session;
    private final long[] shape;

    private OrtModel(OrtEnvironment env, OrtSession session, ModelManifest manifest, String inputName, String ep,
            int threads) {
        this.env = env;
        this.session = session;
        this.manifest = manifest;
        this.inputName = inputName;
        this.executionProvider = ep;
        this.threads = threads;
        this.shape = manifest.input.shape();
    }

    /** The ONNX Runtime version actually loaded (native library), e.g. "1.29.0". */
    public static String ortVersion() {
        return OrtEnvironment.getEnvironment().getVersion();
    }

    /**
     * Opens a model file.
     *
     * @param path the .onnx file
     * @param threads intra-op threads; 0 lets ORT choose (one per core)
     * @param ep {@link #EP_CPU}, {@link #EP_XNNPACK} or {@link #EP_NNAPI} (Android only)
     * @throws OrtException if ORT cannot load the model
     * @throws ModelManifest.ManifestException if the manifest is missing, invalid or contradicts the model
     */
    public static OrtModel open(String path, int threads, String ep) throws OrtException {
        OrtEnvironment env = OrtEnvironment.getEnvironment();
        OrtSession.SessionOptions opts = options(threads, ep);
        try {
            return wrap(env, env.createSession(path, opts), path, threads, ep);
        } finally {
            opts.close();
        }
    }

    /** Like {@link #open(String, int, String)} for a model held in memory. */
    public static OrtModel open(byte[] model, String name, int threads, String ep) throws OrtException {
        OrtEnvironment env = OrtEnvironment.getEnvironment();
        OrtSession.SessionOptions opts = options(threads, ep);
        try {
            return wrap(env, env.createSession(model, opts), name, threads, ep);
        } finally {
            opts.close();
        }
    }

    private static OrtSession.SessionOptions options(int threads, String ep) throws OrtException {
        OrtSession.SessionOptions opts = new OrtSession.SessionOptions();
        if (threads > 0) {
            opts.setIntraOpNumThreads(threads);
        }
        if (EP_XNNPACK.equals(ep)) {
            Map<String, String> xnn = new HashMap<String, String>();
            xnn.put("intra_op_num_threads", String.valueOf(Math.max(threads, 1)));
            opts.addXnnpack(xnn);
        } else if (EP_NNAPI.equals(ep)) {
            String vendor = System.getProperty("java.vendor", "");
            if (!vendor.toLowerCase().contains("android")) {
                opts.close();
                throw new IllegalArgumentException("the NNAPI execution provider exists only on Android");
            }
            opts.addNnapi();
        } else if (!EP_CPU.equals(ep)) {
            opts.close();
            throw new IllegalArgumentException("unknown execution provider '" + ep + "' (cpu, xnnpack, nnapi)");
        }
        return opts;
    }

    private static OrtModel wrap(OrtEnvironment env, OrtSession session, String source, int threads, String ep)
            throws OrtException {
        try {
            String json = session.getMetadata().getCustomMetadata().get(ModelManifest.METADATA_KEY);
            if (json == null) {
                throw new ModelManifest.ManifestException(Collections.singletonList(
                        "no cskd manifest embedded in this model (metadata key '" + ModelManifest.METADATA_KEY
                                + "'); export it with cskd-export"), source);
            }
            ModelManifest m = ModelManifest.parse(json, source);
            if (session.getNumInputs() != 1 || session.getNumOutputs() != 1) {
                throw new ModelManifest.ManifestException(Collections.singletonList("expected one input and one "
                        + "output, found " + session.getNumInputs() + " and " + session.getNumOutputs()), source);
            }
            Map.Entry<String, NodeInfo> in = session.getInputInfo().entrySet().iterator().next();
            TensorInfo info = (TensorInfo) in.getValue().getInfo();
            checkTensor(m, info, source);
            return new OrtModel(env, session, m, in.getKey(), ep, threads);
        } catch (RuntimeException ex) {
            session.close();
            throw ex;
        } catch (OrtException ex) {
            session.close();
            throw ex;
        }
    }

    private static void checkTensor(ModelManifest m, TensorInfo info, String source) {
        long[] expected = m.input.shape();
        long[] actual = info.getShape();
        StringBuilder problem = new StringBuilder();
        boolean shapeOk = actual.length == 4;
        for (int i = 1; shapeOk && i < 4; i++) {
            if (actual[i] >= 0 && actual[i] != expected[i]) {
                shapeOk = false;
            }
        }
        if (!shapeOk) {
            problem.append("input shape ").append(java.util.Arrays.toString(actual)).append(" does not match manifest ")
                    .append(m.input.layout).append(' ').append(java.util.Arrays.toString(expected));
        }
        String dtype = javaTypeName(info.type);
        if (!m.input.dtype.equals(dtype)) {
            if (problem.length() > 0) {
                problem.append("; ");
            }
            problem.append("input dtype ").append(dtype).append(" does not match manifest dtype ")
                    .append(m.input.dtype);
        }
        if (problem.length() > 0) {
            throw new ModelManifest.ManifestException(Collections.singletonList(problem.toString()), source);
        }
    }

    private static String javaTypeName(OnnxJavaType t) {
        switch (t) {
            case FLOAT:
                return "float32";
            case FLOAT16:
                return "float16";
            case INT8:
                return "int8";
            case UINT8:
                return "uint8";
            default:
                return t.toString().toLowerCase();
        }
    }

    /**
     * Runs one preprocessed float32 tensor (see {@link Preprocess#run}) and returns the raw output as float32
     * (integer outputs dequantized, float16 widened), before activation and renormalisation.
     */
    public float[] runRaw(float[] tensor) throws OrtException {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        if (tensor.length != n) {
            throw new IllegalArgumentException("tensor has " + tensor.length + " values, the model takes " + n);
        }
        OnnxTensor input = createInput(tensor);
        try {
            OrtSession.Result result = session.run(Collections.singletonMap(inputName, input));
            try {
                OnnxValue v = result.get(0);
                return readOutput((OnnxTensor) v);
            } finally {
                result.close();
            }
        } finally {
            input.close();
        }
    }

    /** Probabilities, mean, std and percentile for one preprocessed tensor. */
    public Scores score(float[] tensor) throws OrtException {
        return Scores.fromDistribution(Scores.toDistribution(runRaw(tensor), manifest.output), manifest);
    }

    private OnnxTensor createInput(float[] x) throws OrtException {
        ModelManifest.InputSpec spec = manifest.input;
        if ("float32".equals(spec.dtype)) {
            return OnnxTensor.createTensor(env, FloatBuffer.wrap(x), shape);
        }
        if ("float16".equals(spec.dtype)) {
            ShortBuffer buf = ByteBuffer.allocateDirect(x.length * 2).order(ByteOrder.nativeOrder()).asShortBuffer();
            for (float v : x) {
                buf.put(Preprocess.toHalf(v));
            }
            buf.rewind();
            return OnnxTensor.createTensor(env, buf, shape, OnnxJavaType.FLOAT16);
        }
        byte[] q = Preprocess.quantize(x, spec.quantization, spec.dtype);
        ByteBuffer buf = ByteBuffer.allocateDirect(q.length).order(ByteOrder.nativeOrder());
        buf.put(q).rewind();
        return OnnxTensor.createTensor(env, buf, shape, "uint8".equals(spec.dtype) ? OnnxJavaType.UINT8
                : OnnxJavaType.INT8);
    }

    private float[] readOutput(OnnxTensor t) {
        OnnxJavaType type = t.getInfo().type;
        ModelManifest.OutputSpec spec = manifest.output;
        if (type == OnnxJavaType.FLOAT) {
            FloatBuffer fb = t.getFloatBuffer();
            float[] out = new float[fb.remaining()];
            fb.get(out);
            return out;
        }
        if (type == OnnxJavaType.FLOAT16) {
            ShortBuffer sb = t.getShortBuffer();
            float[] out = new float[sb.remaining()];
            for (int i = 0; i < out.length; i++) {
                out[i] = Preprocess.fromHalf(sb.get());
            }
            return out;
        }
        if (type == OnnxJavaType.INT8 || type == OnnxJavaType.UINT8) {
            if (spec.quantization == null) {
                throw new IllegalStateException("integer model output without quantization parameters in the manifest");
            }
            ByteBuffer bb = t.getByteBuffer();
            byte[] q = new byte[bb.remaining()];
            bb.get(q);
            return Scores.dequantize(q, type == OnnxJavaType.UINT8, spec.quantization);
        }
        throw new IllegalStateException("unsupported model output type " + type);
    }

    @Override
    public void close() throws OrtException {
        session.close();
    }
}
