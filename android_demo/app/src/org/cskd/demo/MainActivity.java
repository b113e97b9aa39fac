package org.cskd.demo;

import android.app.Activity;
import android.content.ActivityNotFoundException;
import android.content.ClipData;
import android.content.Intent;
import android.graphics.Bitmap;
import android.graphics.Color;
import android.graphics.Typeface;
import android.net.Uri;
import android.os.Build;
import android.os.Bundle;
import android.provider.MediaStore;
import android.util.Log;
import android.view.Gravity;
import android.view.View;
import android.widget.Button;
import android.widget.ImageView;
import android.widget.LinearLayout;
import android.widget.ScrollView;
import android.widget.TextView;
import android.widget.Toast;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.cskd.demo.core.Benchmark;
import org.cskd.demo.core.Json;
import org.cskd.demo.core.ModelManifest;
import org.cskd.demo.core.OrtModel;
import org.cskd.demo.core.Pipeline;
import org.cskd.demo.core.RgbImage;

/**
 * Scores a photo from the gallery or the camera with the bundled model, or runs the benchmark mode.
 *
 * <p>Benchmark mode: {@code adb shell am start -n org.cskd.demo/.MainActivity --ez benchmark true
 * --ei iterations N [--ei warmup W] [--ei threads T] [--es ep cpu|xnnpack|nnapi]} scores the bundled photo
 * ({@code assets/bench.jpg}) N times and writes {@code files/benchmark.json} (also into the external files dir)
 * with median and p90; see {@link Benchmark} for the fields.
 */
public final class MainActivity extends Activity {
    static final String TAG = "cskd";
    private static final int REQ_PICK = 1;
    private static final int REQ_CAPTURE = 2;
    static final String MODEL_ASSET = "model.onnx";
    static final String BENCH_ASSET = "bench.jpg";
    static final String BENCH_FILE = "benchmark.json";

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private volatile Pipeline pipeline;
    private TextView status;
    private TextView score;
    private TextView details;
    private ImageView preview;
    private DistributionView chart;

    @Override
    protected void onCreate(Bundle saved) {
        super.onCreate(saved);
        setContentView(buildUi());
        status.setText(R.string.loading);
        handleIntent(getIntent());
    }

    @Override
    protected void onNewIntent(Intent intent) {
        super.onNewIntent(intent);
        setIntent(intent);
        handleIntent(intent);
    }

    @Override
    protected void onDestroy() {
        worker.shutdownNow();
        super.onDestroy();
    }

    private void handleIntent(Intent intent) {
        if (intent != null && intent.getBooleanExtra("benchmark", false)) {
            startBenchmark(intent);
            return;
        }
        if (intent != null && Intent.ACTION_SEND.equals(intent.getAction())) {
            Uri uri = intent.getParcelableExtra(Intent.EXTRA_STREAM);
            if (uri != null) {
                scoreUri(uri);
                return;
            }
        }
        worker.execute(new Runnable() {
            @Override
            public void run() {
                try {
                    final Pipeline p = pipeline(0, OrtModel.EP_CPU);
                    ui(new Runnable() {
                        @Override
                        public void run() {
                            ModelManifest m = p.model().manifest;
                            status.setText(getString(R.string.ready) + "\n" + m.name + " " + m.version
                                    + " · ONNX Runtime " + OrtModel.ortVersion());
                        }
                    });
                } catch (Exception e) {
                    showError("cannot load the model", e);
                }
            }
        });
    }

    // ------------------------------------------------------------------------------------------------ UI
    private View buildUi() {
        float dp = getResources().getDisplayMetrics().density;
        LinearLayout col = new LinearLayout(this);
        col.setOrientation(LinearLayout.VERTICAL);
        int pad = (int) (16 * dp);
        col.setPadding(pad, pad, pad, pad);

        LinearLayout row = new LinearLayout(this);
        row.setOrientation(LinearLayout.HORIZONTAL);
        Button pick = new Button(this);
        pick.setText(R.string.pick);
        pick.setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                Intent i = new Intent(Intent.ACTION_GET_CONTENT);
                i.setType("image/*");
                i.addCategory(Intent.CATEGORY_OPENABLE);
                startActivityForResult(Intent.createChooser(i, getString(R.string.pick)), REQ_PICK);
            }
        });
        Button take = new Button(this);
        take.setText(R.string.take);
        take.setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                takePhoto();
            }
        });
        row.addView(pick, new LinearLayout.LayoutParams(0, LinearLayout.LayoutParams.WRAP_CONTENT, 1));
        row.addView(take, new LinearLayout.LayoutParams(0, LinearLayout.LayoutParams.WRAP_CONTENT, 1));
        col.addView(row);

        status = new TextView(this);
        status.setPadding(0, pad / 2, 0, pad / 2);
        col.addView(status);

        preview = new ImageView(this);
        preview.setAdjustViewBounds(true);
        preview.setMaxHeight((int) (320 * dp));
        preview.setScaleType(ImageView.ScaleType.FIT_CENTER);
        col.addView(preview, new LinearLayout.LayoutParams(LinearLayout.LayoutParams.MATCH_PARENT,
                LinearLayout.LayoutParams.WRAP_CONTENT));

        score = new TextView(this);
        score.setTextSize(40);
        score.setTypeface(Typeface.DEFAULT_BOLD);
        score.setGravity(Gravity.CENTER_HORIZONTAL);
        col.addView(score);

        chart = new DistributionView(this);
        col.addView(chart, new LinearLayout.LayoutParams(LinearLayout.LayoutParams.MATCH_PARENT, (int) (150 * dp)));

        details = new TextView(this);
        details.setTypeface(Typeface.MONOSPACE);
        details.setTextColor(Color.DKGRAY);
        col.addView(details);

        ScrollView scroll = new ScrollView(this);
        scroll.addView(col);
        return scroll;
    }

    private void ui(Runnable r) {
        runOnUiThread(r);
    }

    private void showError(final String what, final Throwable e) {
        Log.e(TAG, what, e);
        ui(new Runnable() {
            @Override
            public void run() {
                status.setText(what + ": " + e.getMessage());
            }
        });
    }

    private void takePhoto() {
        File out = PhotoProvider.captureFile(getCacheDir());
        //noinspection ResultOfMethodCallIgnored
        out.delete();
        Uri uri = PhotoProvider.captureUri();
        Intent i = new Intent(MediaStore.ACTION_IMAGE_CAPTURE);
        i.putExtra(MediaStore.EXTRA_OUTPUT, uri);
        // The grant travels with the ClipData; the flags make it writable for the camera app.
        i.setClipData(ClipData.newRawUri("", uri));
        i.addFlags(Intent.FLAG_GRANT_WRITE_URI_PERMISSION | Intent.FLAG_GRANT_READ_URI_PERMISSION);
        try {
            startActivityForResult(i, REQ_CAPTURE);
        } catch (ActivityNotFoundException e) {
            Toast.makeText(this, R.string.no_camera, Toast.LENGTH_LONG).show();
        }
    }

    @Override
    protected void onActivityResult(int request, int result, Intent data) {
        super.onActivityResult(request, result, data);
        if (result != RESULT_OK) {
            return;
        }
        if (request == REQ_PICK && data != null && data.getData() != null) {
            scoreUri(data.getData());
        } else if (request == REQ_CAPTURE) {
            scoreUri(Uri.fromFile(PhotoProvider.captureFile(getCacheDir())));
        }
    }

    // ------------------------------------------------------------------------------------------- scoring
    /** The model, copied out of the APK once so ONNX Runtime can map it from a file. */
    private synchronized Pipeline pipeline(int threads, String ep) throws Exception {
        Pipeline p = pipeline;
        if (p != null && p.model().threads == threads && p.model().executionProvider.equals(ep)) {
            return p;
        }
        if (p != null) {
            p.model().close();
            pipeline = null;
        }
        File model = new File(getNoBackupFilesDir(), MODEL_ASSET);
        long assetSize = getAssets().openFd(MODEL_ASSET).getLength();
        if (!model.isFile() || model.length() != assetSize || model.lastModified() < packageTime()) {
            copyAsset(MODEL_ASSET, model);
        }
        OrtModel m = OrtModel.open(model.getPath(), threads, ep);
        p = new Pipeline(new AndroidDecoder(new File(getCacheDir(), "exif.tmp")), m);
        pipeline = p;
        return p;
    }

    private long packageTime() {
        try {
            return getPackageManager().getPackageInfo(getPackageName(), 0).lastUpdateTime;
        } catch (Exception e) {
            return Long.MAX_VALUE; // unknown: always refresh the copy
        }
    }

    private void copyAsset(String name, File dst) throws IOException {
        File tmp = new File(dst.getPath() + ".tmp");
        InputStream in = getAssets().open(name);
        try {
            OutputStream out = new FileOutputStream(tmp);
            try {
                byte[] buf = new byte[1 << 16];
                int n;
                while ((n = in.read(buf)) > 0) {
                    out.write(buf, 0, n);
                }
            } finally {
                out.close();
            }
        } finally {
            in.close();
        }
        if (!tmp.renameTo(dst)) {
            throw new IOException("cannot move " + tmp + " to " + dst);
        }
    }

    private static byte[] readAll(InputStream in) throws IOException {
        try {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buf = new byte[1 << 16];
            int n;
            while ((n = in.read(buf)) > 0) {
                out.write(buf, 0, n);
            }
            return out.toByteArray();
        } finally {
            in.close();
        }
    }

    private void scoreUri(final Uri uri) {
        status.setText("Scoring…");
        worker.execute(new Runnable() {
            @Override
            public void run() {
                try {
                    InputStream in = getContentResolver().openInputStream(uri);
                    if (in == null) {
                        throw new IOException("cannot open " + uri);
                    }
                    byte[] data = readAll(in);
                    Pipeline p = pipeline(0, OrtModel.EP_CPU);
                    final Pipeline.Result r = p.score(data);
                    final Bitmap bmp = previewBitmap(r.upright);
                    final ModelManifest m = p.model().manifest;
                    ui(new Runnable() {
                        @Override
                        public void run() {
                            show(r, bmp, m);
                        }
                    });
                } catch (Exception e) {
                    showError("cannot score this photo", e);
                } catch (OutOfMemoryError e) {
                    showError("out of memory", e);
                }
            }
        });
    }

    private static Bitmap previewBitmap(RgbImage img) {
        int[] px = new int[img.pixels.length];
        for (int i = 0; i < px.length; i++) {
            px[i] = 0xFF000000 | img.pixels[i];
        }
        return Bitmap.createBitmap(px, img.width, img.height, Bitmap.Config.ARGB_8888);
    }

    private void show(Pipeline.Result r, Bitmap bmp, ModelManifest m) {
        preview.setImageBitmap(bmp);
        score.setText(String.format(Locale.US, "%.2f", r.scores.mean));
        chart.set(r.scores.distribution, m.output.bins, r.scores.mean);
        StringBuilder sb = new StringBuilder();
        sb.append(String.format(Locale.US, "score  %.3f on %.0f..%.0f%n", r.scores.mean, m.output.bins[0],
                m.output.bins[m.output.bins.length - 1]));
        sb.append(String.format(Locale.US, "std    %.3f  (rater disagreement)%n", r.scores.std));
        if (r.scores.percentile != null) {
            sb.append(String.format(Locale.US, "pct    %.1f  vs %s%n", r.scores.percentile, m.calibration.reference));
        }
        if (r.scores.calibrated != null) {
            sb.append(String.format(Locale.US, "%-6s %.2f%n", m.calibration.target, r.scores.calibrated));
        }
        sb.append(String.format(Locale.US, "decode+EXIF   %6.1f ms  (orientation %d, 1/%d JPEG scale)%n", r.decodeMs,
                r.orientation, r.jpegScale));
        sb.append(String.format(Locale.US, "preprocess    %6.1f ms%n", r.preprocessMs));
        sb.append(String.format(Locale.US, "inference     %6.1f ms%n", r.inferenceMs));
        sb.append(String.format(Locale.US, "model %s %s, ONNX Runtime %s", m.name, m.version, OrtModel.ortVersion()));
        details.setText(sb.toString());
        status.setText("");
    }

    // ----------------------------------------------------------------------------------------- benchmark
    private void startBenchmark(Intent intent) {
        final int iterations = Math.max(1, intent.getIntExtra("iterations", 50));
        final int warmup = Math.max(0, intent.getIntExtra("warmup", 5));
        final int threads = Math.max(0, intent.getIntExtra("threads", 0));
        String epExtra = intent.getStringExtra("ep");
        final String ep = epExtra != null ? epExtra : OrtModel.EP_CPU;
        status.setText(String.format(Locale.US, "Benchmark: %d iterations…", iterations));
        final File[] outputs = benchmarkFiles();
        for (File f : outputs) {
            //noinspection ResultOfMethodCallIgnored
            f.delete(); // a stale result must never be read as this run's
        }
        worker.execute(new Runnable() {
            @Override
            public void run() {
                Map<String, Object> report;
                try {
                    Pipeline p = pipeline(threads, ep);
                    byte[] photo = readAll(getAssets().open(BENCH_ASSET));
                    report = Benchmark.run(p, photo, iterations, warmup, platform(), new Benchmark.Progress() {
                        @Override
                        public void onIteration(final int done, final int total) {
                            if (done % 10 == 0 || done == total) {
                                ui(new Runnable() {
                                    @Override
                                    public void run() {
                                        status.setText(String.format(Locale.US, "Benchmark: %d / %d", done, total));
                                    }
                                });
                            }
                        }
                    });
                } catch (Throwable e) {
                    Log.e(TAG, "benchmark failed", e);
                    report = new LinkedHashMap<String, Object>();
                    report.put("format", Benchmark.FORMAT);
                    report.put("status", "failed");
                    report.put("reason", e.getClass().getSimpleName() + ": " + e.getMessage());
                    report.putAll(platform());
                }
                final String json = Json.writePretty(report);
                for (File f : outputs) {
                    try {
                        writeAtomically(f, json);
                    } catch (IOException e) {
                        Log.w(TAG, "cannot write " + f, e);
                    }
                }
                Log.i(TAG, "CSKD_BENCHMARK " + Json.write(report));
                final Map<String, Object> shown = report;
                ui(new Runnable() {
                    @Override
                    public void run() {
                        status.setText("Benchmark written to " + outputs[0]);
                        details.setText(json);
                        if ("ok".equals(shown.get("status"))) {
                            score.setText(String.format(Locale.US, "%.1f ms", (Double) shown.get("median_ms")));
                        }
                    }
                });
            }
        });
    }

    private File[] benchmarkFiles() {
        File ext = getExternalFilesDir(null);
        File in = new File(getFilesDir(), BENCH_FILE);
        return ext != null ? new File[] {in, new File(ext, BENCH_FILE)} : new File[] {in};
    }

    private Map<String, Object> platform() {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("device", Build.MANUFACTURER + " " + Build.MODEL);
        m.put("os", "Android " + Build.VERSION.RELEASE + " (API " + Build.VERSION.SDK_INT + ")");
        m.put("abi", Build.SUPPORTED_ABIS.length > 0 ? Build.SUPPORTED_ABIS[0] : "");
        m.put("soc", Build.HARDWARE);
        m.put("cores", Runtime.getRuntime().availableProcessors());
        m.put("model_file", MODEL_ASSET);
        m.put("photo_file", BENCH_ASSET);
        m.put("app", BuildInfo.VERSION_NAME);
        return m;
    }

    private static void writeAtomically(File dst, String text) throws IOException {
        File tmp = new File(dst.getPath() + ".tmp");
        OutputStream out = new FileOutputStream(tmp);
        try {
            out.write(text.getBytes("UTF-8"));
        } finally {
            out.close();
        }
        if (!tmp.renameTo(dst)) {
            throw new IOException("cannot move " + tmp + " to " + dst);
        }
    }
}
