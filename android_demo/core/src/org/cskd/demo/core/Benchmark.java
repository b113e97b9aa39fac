package org.cskd.demo.core;

import ai.onnxruntime.OrtException;
import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The app's benchmark mode: N scored runs of one photo, reported as median and p90.
 *
 * <p>The report is what {@code cskd_bench.runtime_bench.phone_benchmark} reads from the phone
 * ({@code files/benchmark.json}): {@code median_ms} / {@code p90_ms} are the model call alone (comparable with the
 * desktop latency rows), {@code end_to_end} and {@code decode_preprocess} give the rest of the photo's path.
 */
public final class Benchmark {
    /** Report format version, bumped when fields change meaning. */
    public static final int FORMAT = 1;

    private Benchmark() {}

    /** Receives progress so the UI can show it; may be null. */
    public interface Progress {
        void onIteration(int done, int total);
    }

    /**
     * Runs the benchmark.
     *
     * @param photo encoded bytes of the bundled photo
     * @param iterations timed runs (at least 1)
     * @param warmup untimed runs first (ORT allocates and tunes on the first calls)
     * @param platform facts the caller knows (device, os, abi, model file...), copied into the report
     */
    public static Map<String, Object> run(Pipeline pipeline, byte[] photo, int iterations, int warmup,
            Map<String, Object> platform, Progress progress) throws IOException, OrtException {
        if (iterations < 1) {
            throw new IllegalArgumentException("iterations must be at least 1 (got " + iterations + ")");
        }
        Pipeline.Result last = null;
        for (int i = 0; i < warmup; i++) {
            last = pipeline.score(photo);
        }
        double[] inference = new double[iterations];
        double[] front = new double[iterations];
        double[] total = new double[iterations];
        for (int i = 0; i < iterations; i++) {
            last = pipeline.score(photo);
            inference[i] = last.inferenceMs;
            front[i] = last.decodeMs + last.preprocessMs;
            total[i] = last.totalMs();
            if (progress != null) {
                progress.onIteration(i + 1, iterations);
            }
        }
        OrtModel model = pipeline.model();
        Map<String, Object> r = new LinkedHashMap<String, Object>();
        r.put("format", FORMAT);
        r.put("status", "ok");
        r.put("iterations", iterations);
        r.put("warmup", warmup);
        r.put("median_ms", Stats.median(inference));
        r.put("p90_ms", Stats.percentile(inference, 90));
        r.put("mean_ms", Stats.mean(inference));
        r.put("min_ms", Stats.min(inference));
        r.put("end_to_end", summary(total));
        r.put("decode_preprocess", summary(front));
        r.put("model", model.manifest.name);
        r.put("model_version", model.manifest.version);
        r.put("ort_version", OrtModel.ortVersion());
        r.put("threads", model.threads);
        r.put("execution_provider", model.executionProvider);
        Map<String, Object> p = new LinkedHashMap<String, Object>();
        p.put("orientation", last.orientation);
        p.put("jpeg_scale", last.jpegScale);
        p.put("decoded_size", java.util.Arrays.asList((Object) last.decodedWidth, last.decodedHeight));
        p.put("bytes", photo.length);
        r.put("photo", p);
        r.put("score", last.scores.mean);
        r.put("std", last.scores.std);
        if (platform != null) {
            for (Map.Entry<String, Object> e : platform.entrySet()) {
                if (!r.containsKey(e.getKey())) {
                    r.put(e.getKey(), e.getValue());
                }
            }
        }
        return r;
    }

    private static Map<String, Object> summary(double[] ms) {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("median_ms", Stats.median(ms));
        m.put("p90_ms", Stats.percentile(ms, 90));
        m.put("mean_ms", Stats.mean(ms));
        return m;
    }
}
