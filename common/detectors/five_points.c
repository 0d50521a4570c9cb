/* dlib's 5-point shape predictor (Kazemi & Sullivan's ensemble of regression trees), walked
 * in C so that Python's ctypes releases the GIL for the call.
 *
 * The arithmetic follows dlib's, step for step, so that the integer points are the same: the
 * similarity from the mean shape to the current one in double, cast to float; the sampled
 * pixels' unit positions in float; their image positions in double, rounded as floor(v + 0.5);
 * pixels outside the window read as 0, inside as (R + G + B) / 3; the trees' leaves added to the
 * shape one after the other in float. Build with -ffp-contract=off (no fused multiply-adds).
 * common/detectors/five_points.py compiles it, loads it and checks it against dlib.
 */
#include <stdint.h>

typedef struct {
    int32_t landmarks, cascades, pixels, trees, splits, depth;
    const float *initial;  /* (L, 2) */
    const int32_t *anchors;  /* (C, P) */
    const float *deltas;  /* (C, P, 2) */
    const int32_t *idx1, *idx2;  /* (C, T, S) */
    const float *thresh;  /* (C, T, S) */
    const float *leaves;  /* (C, T, S + 1, 2 L) */
} shape_model;

/* floor(v + 0.5), as dlib rounds a point; written out because floor() is a libm call on
 * baseline x86-64 (no SSE4.1), and the walk rounds 24,000 coordinates a face. */
static inline int64_t round_half_up(double v) {
    const double x = v + 0.5;
    const int64_t t = (int64_t)x;
    return t - (x < (double)t);
}

/* image: (height, width, 3) RGB, rows contiguous; window: left, top, width, height of the part
 * of the image dlib would be handed; rect: left, top, right, bottom of the face box in the
 * window's coordinates; features: scratch of model->pixels floats; shape: scratch of 2 L
 * floats; points: (L, 2) output in the window's coordinates. */
void five_points(const shape_model *model, const uint8_t *image, int64_t width,
                 const int64_t *window, const double *rect, float *features, float *shape,
                 int64_t *points) {
    const int L = model->landmarks, P = model->pixels, T = model->trees, S = model->splits;
    const double ex = rect[2] - rect[0], ey = rect[3] - rect[1];
    double from_x[64], from_y[64], from_mx = 0, from_my = 0, norm = 0;
    for (int i = 0; i < 2 * L; i++) shape[i] = model->initial[i];
    for (int i = 0; i < L; i++) {
        from_mx += model->initial[2 * i];
        from_my += model->initial[2 * i + 1];
    }
    from_mx /= L;
    from_my /= L;
    for (int i = 0; i < L; i++) {
        from_x[i] = model->initial[2 * i] - from_mx;
        from_y[i] = model->initial[2 * i + 1] - from_my;
        norm += from_x[i] * from_x[i] + from_y[i] * from_y[i];
    }
    for (int c = 0; c < model->cascades; c++) {
        /* In 2-D, Umeyama's least-squares similarity is a + ib = sum(conj(dx) dy) / sum|dx|^2. */
        double mx = 0, my = 0, dot = 0, cross = 0;
        for (int i = 0; i < L; i++) {
            mx += shape[2 * i];
            my += shape[2 * i + 1];
        }
        mx /= L;
        my /= L;
        for (int i = 0; i < L; i++) {
            const double dx = shape[2 * i] - mx, dy = shape[2 * i + 1] - my;
            dot += from_x[i] * dx + from_y[i] * dy;
            cross += from_x[i] * dy - from_y[i] * dx;
        }
        const float a = (float)(dot / norm), b = (float)(cross / norm);
        const int32_t *anchor = model->anchors + (int64_t)c * P;
        const float *delta = model->deltas + (int64_t)c * P * 2;
        for (int p = 0; p < P; p++) {
            const float ddx = delta[2 * p], ddy = delta[2 * p + 1];
            const float ux = (a * ddx - b * ddy) + shape[2 * anchor[p]];
            const float uy = (b * ddx + a * ddy) + shape[2 * anchor[p] + 1];
            const int64_t x = round_half_up((double)ux * ex + rect[0]);
            const int64_t y = round_half_up((double)uy * ey + rect[1]);
            if (x >= 0 && x < window[2] && y >= 0 && y < window[3]) {
                const uint8_t *px = image + ((y + window[1]) * width + x + window[0]) * 3;
                features[p] = (float)(((int)px[0] + px[1] + px[2]) / 3);
            } else {
                features[p] = 0.0f;
            }
        }
        const int64_t base = (int64_t)c * T * S;
        for (int t = 0; t < T; t++) {
            int node = 0;
            for (int d = 0; d < model->depth; d++) {
                const int64_t s = base + (int64_t)t * S + node;
                node = features[model->idx1[s]] - features[model->idx2[s]] > model->thresh[s]
                           ? 2 * node + 1
                           : 2 * node + 2;
            }
            const float *leaf =
                model->leaves + (((int64_t)c * T + t) * (S + 1) + (node - S)) * 2 * L;
            for (int k = 0; k < 2 * L; k++) shape[k] += leaf[k];
        }
    }
    for (int i = 0; i < L; i++) {
        points[2 * i] = round_half_up((double)shape[2 * i] * ex + rect[0]);
        points[2 * i + 1] = round_half_up((double)shape[2 * i + 1] * ey + rect[1]);
    }
}
