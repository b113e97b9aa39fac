package org.cskd.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.fail;

import java.util.List;
import java.util.Map;
import org.junit.Test;

/** Java accepts exactly the manifests the Python validator accepts, and reads the same values. */
public class ManifestGoldenTest {
    @Test
    public void validManifestsParseToThePythonFields() throws Exception {
        int n = 0;
        for (Map<String, Object> c : Goldens.list("manifests")) {
            if (!Boolean.TRUE.equals(c.get("valid"))) {
                continue;
            }
            String file = (String) c.get("file");
            ModelManifest m = Goldens.manifest(file);
            Map<?, ?> e = (Map<?, ?>) c.get("expected");
            ModelManifest.InputSpec i = m.input;
            assertEquals(file, e.get("name"), m.name);
            assertEquals(file, e.get("version"), m.version);
            assertEquals(file, Goldens.i(e.get("height")), i.height);
            assertEquals(file, Goldens.i(e.get("width")), i.width);
            assertEquals(file, Goldens.i(e.get("resize_height")), i.resizeHeight);
            assertEquals(file, Goldens.i(e.get("resize_width")), i.resizeWidth);
            assertEquals(file, e.get("resize_mode"), i.resizeMode);
            assertEquals(file, e.get("crop_mode"), i.cropMode);
            assertEquals(file, e.get("interpolation"), i.interpolation);
            assertEquals(file, e.get("layout"), i.layout);
            assertEquals(file, e.get("dtype"), i.dtype);
            assertEquals(file, e.get("draft"), i.draft);
            assertEquals(file, Goldens.d(e.get("draft_factor")), i.draftFactor, 0);
            assertEquals(file, Goldens.d(e.get("scale")), i.scale, 0);
            assertArrayEquals(file, Goldens.doubles(e.get("mean")), i.mean, 0);
            assertArrayEquals(file, Goldens.doubles(e.get("std")), i.std, 0);
            double[] bg = Goldens.doubles(e.get("background"));
            assertArrayEquals(file, new int[] {(int) bg[0], (int) bg[1], (int) bg[2]}, i.background);
            assertArrayEquals(file, Goldens.doubles(e.get("bins")), m.output.bins, 0);
            assertEquals(file, e.get("activation"), m.output.activation);
            double[] shape = Goldens.doubles(e.get("shape"));
            long[] s = i.shape();
            for (int k = 0; k < 4; k++) {
                assertEquals(file, (long) shape[k], s[k]);
            }
            n++;
        }
        assertFalse("no valid manifest goldens", n == 0);
    }

    @Test
    @SuppressWarnings("unchecked")
    public void invalidManifestsAreRejectedListingTheProblems() throws Exception {
        int n = 0;
        for (Map<String, Object> c : Goldens.list("manifests")) {
            if (Boolean.TRUE.equals(c.get("valid"))) {
                continue;
            }
            String file = (String) c.get("file");
            List<String> pythonProblems = (List<String>) c.get("problems");
            try {
                Goldens.manifest(file);
                fail(file + " accepted; Python found: " + pythonProblems);
            } catch (ModelManifest.ManifestException ex) {
                assertEquals(file + ": " + ex.problems + " vs Python " + pythonProblems, pythonProblems.size(),
                        ex.problems.size());
                assertFalse(ex.getMessage().isEmpty());
                // The message names the source, as the Python error does.
                assertEquals(true, ex.getMessage().contains(file));
            }
            n++;
        }
        assertFalse("no invalid manifest goldens", n == 0);
    }
}
