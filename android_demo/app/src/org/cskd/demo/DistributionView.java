package org.cskd.demo;

import android.content.Context;
import android.graphics.Canvas;
import android.graphics.Paint;
import android.view.View;
import java.util.Locale;

/** Bar chart of the predicted score distribution, with the mean marked. */
final class DistributionView extends View {
    private float[] p;
    private double[] bins;
    private double mean;
    private final Paint bar = new Paint(Paint.ANTI_ALIAS_FLAG);
    private final Paint meanPaint = new Paint(Paint.ANTI_ALIAS_FLAG);
    private final Paint text = new Paint(Paint.ANTI_ALIAS_FLAG);

    DistributionView(Context ctx) {
        super(ctx);
        float dp = ctx.getResources().getDisplayMetrics().density;
        bar.setColor(0xFF4CAF50);
        meanPaint.setColor(0xFFFFC107);
        meanPaint.setStrokeWidth(3 * dp);
        text.setColor(0xFF607D8B);
        text.setTextSize(11 * dp);
        text.setTextAlign(Paint.Align.CENTER);
        setMinimumHeight((int) (140 * dp));
    }

    void set(float[] distribution, double[] bins, double mean) {
        this.p = distribution;
        this.bins = bins;
        this.mean = mean;
        invalidate();
    }

    @Override
    protected void onDraw(Canvas c) {
        if (p == null) {
            return;
        }
        float w = getWidth();
        float h = getHeight() - text.getTextSize() * 1.6f;
        float max = 1e-6f;
        for (float v : p) {
            max = Math.max(max, v);
        }
        float slot = w / p.length;
        for (int i = 0; i < p.length; i++) {
            float top = h - h * (p[i] / max) * 0.95f;
            c.drawRect(i * slot + slot * 0.12f, top, (i + 1) * slot - slot * 0.12f, h, bar);
            c.drawText(String.format(Locale.US, "%.0f", bins[i]), (i + 0.5f) * slot, getHeight() - 2, text);
        }
        // Mean as a position between the first and last bin centres.
        double lo = bins[0];
        double hi = bins[bins.length - 1];
        float x = (float) (slot * 0.5 + (mean - lo) / (hi - lo) * (w - slot));
        c.drawLine(x, 0, x, h, meanPaint);
    }
}
