package org.cskd.demo;

import android.content.ContentProvider;
import android.content.ContentValues;
import android.database.Cursor;
import android.database.MatrixCursor;
import android.net.Uri;
import android.os.ParcelFileDescriptor;
import android.provider.OpenableColumns;
import java.io.File;
import java.io.FileNotFoundException;

/**
 * The one file a camera app may write: {@code content://org.cskd.demo.photos/capture.jpg} in the cache dir.
 *
 * <p>Android 7+ forbids handing file:// URIs to other apps and AndroidX's FileProvider is not available to
 * this Gradle-free build, so this minimal provider grants access to exactly that file, nothing else.
 */
public final class PhotoProvider extends ContentProvider {
    static final String AUTHORITY = "org.cskd.demo.photos";
    static final String CAPTURE = "capture.jpg";

    static Uri captureUri() {
        return Uri.parse("content://" + AUTHORITY + "/" + CAPTURE);
    }

    static File captureFile(File cacheDir) {
        File dir = new File(cacheDir, "camera");
        //noinspection ResultOfMethodCallIgnored
        dir.mkdirs();
        return new File(dir, CAPTURE);
    }

    private File fileFor(Uri uri) throws FileNotFoundException {
        if (!CAPTURE.equals(uri.getLastPathSegment()) || uri.getPathSegments().size() != 1) {
            throw new FileNotFoundException("no such file: " + uri);
        }
        return captureFile(getContext().getCacheDir());
    }

    @Override
    public boolean onCreate() {
        return true;
    }

    @Override
    public ParcelFileDescriptor openFile(Uri uri, String mode) throws FileNotFoundException {
        return ParcelFileDescriptor.open(fileFor(uri), ParcelFileDescriptor.parseMode(mode));
    }

    @Override
    public Cursor query(Uri uri, String[] projection, String selection, String[] args, String sortOrder) {
        File f;
        try {
            f = fileFor(uri);
        } catch (FileNotFoundException e) {
            return null;
        }
        String[] cols = projection != null ? projection : new String[] {OpenableColumns.DISPLAY_NAME,
            OpenableColumns.SIZE};
        MatrixCursor c = new MatrixCursor(cols, 1);
        Object[] row = new Object[cols.length];
        for (int i = 0; i < cols.length; i++) {
            if (OpenableColumns.DISPLAY_NAME.equals(cols[i])) {
                row[i] = CAPTURE;
            } else if (OpenableColumns.SIZE.equals(cols[i])) {
                row[i] = f.length();
            }
        }
        c.addRow(row);
        return c;
    }

    @Override
    public String getType(Uri uri) {
        return "image/jpeg";
    }

    @Override
    public Uri insert(Uri uri, ContentValues values) {
        throw new UnsupportedOperationException("read/write of the capture file only");
    }

    @Override
    public int delete(Uri uri, String selection, String[] args) {
        return 0;
    }

    @Override
    public int update(Uri uri, ContentValues values, String selection, String[] args) {
        return 0;
    }
}
