package org.cskd.demo.jvm;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.cskd.demo.core.Benchmark;
import org.cskd.demo.core.Json;
import org.cskd.demo.core.OrtModel;
import org.cskd.demo.core.Pipeline;

/**
 * The app's scoring path on a desktop JVM: the same core classes and the same ONNX Runtime Java API.
 *
 * <pre>
 * java ... org.cskd.demo.jvm.ScoreCli --model m.onnx --out scores.json [--threads N] photo...
 * java ... org.cskd.demo.jvm.ScoreCli --model m.onnx --benchmark N --out benchmark.json photo
 * </pre>
 */
public final class ScoreCli {
    private ScoreCli() {}

    public static void main(String[] args) throws Exception {
        String model = null;
        String out = null;
        int threads = 1;
        int benchmark = 0;
        String ep = OrtModel.EP_CPU;
        List<String> photos = new ArrayList<String>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if ("--model".equals(a)) {
                model = args[++i];
            } else if ("--out".equals(a)) {
                out = args[++i];
            } else if ("--threads".equals(a)) {
                threads = Integer.parseInt(args[++i]);
            } else if ("--benchmark".equals(a)) {
                benchmark = Integer.parseInt(args[++i]);
            } else if ("--ep".equals(a)) {
                ep = args[++i];
            } else if (a.startsWith("--")) {
                System.err.println("unknown option " + a);
                System.exit(2);
            } else {
                photos.add(a);
            }
        }
        if (model == null || out == null || photos.isEmpty()) {
            System.err.println("usage: ScoreCli --model M.onnx --out OUT.json [--threads N] [--benchmark N] photo...");
            System.exit(2);
        }
        Map<String, Object> report = new LinkedHashMap<String, Object>();
        try (OrtModel m = OrtModel.open(model, threads, ep)) {
            Pipeline pipeline = new Pipeline(new JvmDecoder(), m);
            if (benchmark > 0) {
                Map<String, Object> platform = new LinkedHashMap<String, Object>();
                platform.put("device", "jvm " + System.getProperty("os.name") + " " + System.getProperty("os.arch"));
                platform.put("model_file", new File(model).getName());
                report = Benchmark.run(pipeline, Files.readAllBytes(new File(photos.get(0)).toPath()), benchmark,
                        Math.min(5, benchmark), platform, null);
            } else {
                report.put("ort_version", OrtModel.ortVersion());
                report.put("model", m.manifest.name);
                List<Object> results = new ArrayList<Object>();
                for (String p : photos) {
                    Map<String, Object> r;
                    try {
                        r = pipeline.score(Files.readAllBytes(new File(p).toPath())).toMap();
                        r.put("ok", true);
                    } catch (IOException ex) {
                        r = new LinkedHashMap<String, Object>();
                        r.put("ok", false);
                        r.put("error", ex.getMessage());
                    }
                    r.put("source", p);
                    results.add(r);
                }
                report.put("results", results);
            }
        }
        File dst = new File(out);
        File tmp = new File(out + ".tmp");
        Files.write(tmp.toPath(), Json.writePretty(report).getBytes(StandardCharsets.UTF_8));
        Files.move(tmp.toPath(), dst.toPath(), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
