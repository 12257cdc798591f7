/* chai — CHAI head clustering: k-means (offline cluster counts), the kneedle elbow, average-linkage
 * agglomerative clustering (online membership), and head plans (which heads share attention
 * scores, per layer). See docs/heads.md for the method and REFERENCE.md §1 for the paper's code.
 * Indices here are 0-based (heads, layers); the Lua binding converts. */
#ifndef CHAI_HEADS_H
#define CHAI_HEADS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- k-means ------------------------------------------------------------------------------- */

typedef struct chai_kmeans_opts {
  uint64_t seed; /* every draw comes from chai_rng streams derived from this seed */
  int n_init;    /* restarts; the run with the lowest inertia is kept (>= 1) */
  int max_iter;  /* Lloyd iterations per restart (>= 1) */
} chai_kmeans_opts;

/* seed 0, n_init 4, max_iter 300. */
chai_kmeans_opts chai_kmeans_defaults(void);

/* K-means on the rows of x (n,d), row-major f32, into k clusters (1 <= k <= n).
 * Seeding: greedy k-means++ as scikit-learn does it (each new centre is the best of 2+⌊ln k⌋
 * D²-weighted candidates). Lloyd iterations until no label changes or max_iter; a cluster left
 * empty is re-seeded with the point farthest from its centre. Distances and the inertia (sum of
 * squared distances to the assigned centre) are computed in double.
 * Deterministic: restart r draws from its own stream (seed, r), so restart 0 is the n_init=1 run
 * and more restarts never give a higher inertia; ties go to the lowest index; no result depends
 * on the thread count.
 * labels (n) and centers (k,d) may be NULL; inertia may be NULL. Fails with CHAI_ERR_ARG naming
 * n, d, k or an option, CHAI_ERR_NOMEM; outputs are unspecified on failure. */
chai_status chai_kmeans(int *labels, float *centers, double *inertia, const float *x, int n, int d,
                        int k, const chai_kmeans_opts *opts);

/* The paper's offline statistic for one layer: for each sample s, an (H, cols[s]) matrix
 * samples[s] (row h = head h's attention row); for k = 1..H, inertia[k-1] = Σ_s inertia of
 * k-means with k clusters on sample s's H rows (sklearn KMeans per sample, summing inertia_).
 * Sample s and k use the stream (seed, s, k), so the sums are the same for any thread count.
 * inertia is (H). Fails with CHAI_ERR_ARG (no samples, H < 1, cols[s] < 1, a NULL sample). */
chai_status chai_kmeans_inertia_curve(double *inertia, const float *const *samples, const int *cols,
                                      int n_samples, int H, const chai_kmeans_opts *opts);

/* ---- elbow (kneedle) ------------------------------------------------------------------------ */

typedef enum chai_curve { CHAI_CURVE_CONVEX = 0, CHAI_CURVE_CONCAVE = 1 } chai_curve;
typedef enum chai_direction { CHAI_DIR_DECREASING = 0, CHAI_DIR_INCREASING = 1 } chai_direction;

/* Kneedle (Satopää et al. 2011) as the kneed package computes it (offline mode, interp1d):
 * normalise x and y to [0,1]; flip the curve into a concave increasing one; difference curve
 * d = y' − x'; local maxima of d (>= both neighbours); threshold T = d_max − S·mean(Δx'); the knee
 * is the first maximum after which d drops below its threshold (a local minimum on the way resets
 * the threshold to 0). x must be strictly increasing, n >= 3 (fewer: no knee).
 * *knee = index into x of the knee, or -1 when kneedle finds none (a flat or straight curve, or
 * no drop below the threshold). S >= 0 is the sensitivity: larger S waits for a bigger drop.
 * Fails with CHAI_ERR_ARG for non-finite values, non-increasing x or S < 0. */
chai_status chai_kneedle(int *knee, const double *x, const double *y, int n, double S,
                         chai_curve curve, chai_direction direction);

/* The elbow of an inertia curve inertia[k-1], k = 1..n (decreasing, convex): kneedle with
 * sensitivity S (1.0 is kneed's default). When kneedle finds none, the fallback is the k whose
 * point lies farthest from the chord joining (1, inertia[0]) and (n, inertia[n-1]) (ties: the
 * lowest k; a flat curve gives k = 1). *k is 1-based (a cluster count); *by_kneedle tells which
 * rule chose it (may be NULL). n == 1 gives k = 1. */
chai_status chai_elbow(int *k, bool *by_kneedle, const double *inertia, int n, double S);

/* ---- agglomerative clustering ---------------------------------------------------------------- */

/* dist (n,n) = 1 − cos(x_i, x_j) for the rows of x (n,d), in double. A zero row is at distance 0
 * from another zero row and 1 from any other row (scipy would give NaN). The diagonal is 0 and
 * tiny negative values from rounding are clamped to 0. */
chai_status chai_cosine_distance(double *dist, const float *x, int n, int d);

/* Average-linkage agglomerative clustering on a precomputed symmetric distance matrix (n,n) into
 * exactly k clusters (1 <= k <= n), as sklearn AgglomerativeClustering(metric="precomputed",
 * linkage="average"): repeatedly merge the two clusters with the smallest mean pairwise distance.
 * Ties: the pair whose (lower representative, higher representative) is lexicographically
 * smallest, where a cluster's representative is its lowest-index member. labels (n) receive
 * 0..k-1 numbered by representative, so head 0 is in cluster 0 and cluster c's representative is
 * the first i with labels[i] == c. Fails with CHAI_ERR_ARG for a bad k or n, a non-finite, negative
 * or asymmetric distance (naming i, j). */
chai_status chai_agglomerative_average(int *labels, const double *dist, int n, int k);

/* ---- the CHAI-KTQ project's rule (its "CHAI-base") ------------------------------------------- */

/* One layer with H heads and a 1-D feature per head (mean attention): 1-D k-means for k = 1..H,
 * kneedle elbow on that inertia curve (sensitivity S), k = max(H − ⌊0.2·H⌋, elbow), then labels
 * (H) from the k-means at that k, renumbered 0..k-1 by lowest member. *k_out receives the number
 * of clusters the labels hold (k, or fewer when heads have identical features).
 * Fails as chai_kmeans does. */
chai_status chai_heads_ktq_rule(int *labels, int *k_out, const float *mean_attention, int H,
                                double S, const chai_kmeans_opts *opts);

/* Renumbers labels (n) in place so clusters are numbered 0.. by their lowest-index member;
 * returns the number of clusters, or -1 when a label is negative. */
int chai_labels_canonical(int *labels, int n);

/* ---- clustered attention ----------------------------------------------------------------------
 */

/* Attention where each head scores with its cluster's representative, whose queries and keys are
 * the only ones stored: q (B,Tq,K,D) and k (B,Tk,K,D) hold K representative slots per token (token
 * strides q_ts, k_ts floats), v (B,Tk,H,D) every head (stride v_ts), out (B,Tq,H,D) packed.
 * slot[h] in 0..K-1 is head h's cluster. Query i sits at key position Tk−Tq+i (causal: it sees
 * keys 0..Tk−Tq+i); key_mask (B,Tk) 1 attend / 0 padding, or NULL. A slot's scores and softmax are
 * computed once and applied to the V of each of its heads (the mask does not depend on the head,
 * so members' probabilities are the representative's). Same blocking and BLAS calls as
 * chai_attention_forward, so with K = H and slot[h] = h the results agree to rounding; results do
 * not depend on the thread count. CHAI_ERR_ARG for bad sizes, strides, or a slot out of range or
 * unused; CHAI_ERR_NOMEM. */
typedef struct chai_heads_attention_args {
  int B, Tq, Tk, H, K, D;
  int q_ts, k_ts, v_ts;
  float scale;
  bool causal;
  const float *key_mask;
  const int *slot;
} chai_heads_attention_args;
chai_status chai_heads_attention_forward(float *out, const float *q, const float *k, const float *v,
                                         const chai_heads_attention_args *a);

/* CHAI's online membership for one layer and one prompt: from the first n tokens' queries q and
 * keys k (n,H,D) (token strides q_ts, k_ts), each head's n×n softmax(q·kᵀ·scale) with NO causal
 * mask (as the paper's code) flattened to n² features; cosine distance between heads;
 * average-linkage agglomerative clustering into n_clusters; labels (H) numbered by lowest member,
 * so each cluster's representative is its lowest-index head. CHAI_ERR_ARG for bad sizes. */
chai_status chai_heads_online_labels(int *labels, const float *q, const float *k, int n, int H,
                                     int D, int q_ts, int k_ts, float scale, int n_clusters);

/* ---- attention statistics (layer sensitivity) ------------------------------------------------
 */

/* Sums over one head's causal attention probabilities, accumulated over forwards. */
typedef struct chai_attention_stats {
  double entropy;     /* Σ over counted query rows of −Σ_j p·ln p (nats) */
  double max_entropy; /* Σ over the same rows of ln(keys the row sees): uniform attention's entropy */
  double prob_sum;    /* Σ of every probability of the T×T matrix (masked cells hold 0) */
  int64_t rows;       /* counted query rows: real tokens */
  int64_t cells;      /* T·T per forward: the denominator of the seed project's "mean attention" */
} chai_attention_stats;

/* Adds one forward's statistics to stats (H): probs (H,T,T) row-major, row i = query i's softmax
 * over keys 0..T−1 (causal: keys past i hold 0); key_mask (T) 1 real / 0 padding, or NULL (all
 * real). Padding query rows are not counted in entropy/max_entropy/rows; prob_sum and cells take
 * the whole matrix, as the seed project's np.mean over (batch, head, query, key) does. A row's
 * entropy skips zero probabilities (0·ln 0 = 0). */
void chai_heads_attention_stats(chai_attention_stats *stats, const float *probs,
                                const float *key_mask, int H, int T);

/* ---- plans ----------------------------------------------------------------------------------- */

/* One clustered layer. Heads are grouped by cluster in `order`; cluster c is
 * order[start[c] .. start[c+1]-1] and its first head is its representative (whose K the model
 * keeps). score_head[h] is h's representative (the map chai_attention_forward takes). An online
 * plan layer may give only k (has_clusters false; order/start/score_head then NULL). */
typedef struct chai_heads_layer {
  int layer;   /* 0-based layer index */
  int n_heads; /* H */
  int k;       /* number of clusters */
  bool has_clusters;
  int n_listed;    /* heads listed in the clusters (== n_heads once validated) */
  int *order;      /* (H) */
  int *start;      /* (k+1) */
  int *score_head; /* (H) */
} chai_heads_layer;

/* A plan: the listed layers in increasing layer order (a layer not listed is dense), plus the
 * optional "meta" object kept as JSON text. Owns its arrays; free with chai_heads_plan_free. */
typedef struct chai_heads_plan {
  int n_layers;
  chai_heads_layer *layers;
  char *meta_json; /* NULL when absent */
} chai_heads_plan;

/* What a plan is checked against. n_layers / n_heads 0 = unknown (then a layer's head count is the
 * number of heads it lists, and heads must be exactly 0..count-1). base (0 or 1) is added to every
 * index that an error message names, so Lua users read their own 1-based numbers. */
typedef struct chai_heads_dims {
  int n_layers;
  int n_heads;
  int base;
} chai_heads_dims;

/* Parses plan JSON text ({"layers":[{"layer":0,"clusters":[[0,3],[1],[2]],"k":3}],"meta":{...}}).
 * A layer entry needs "clusters" or "k" (both: k must equal the cluster count). Refused with
 * CHAI_ERR_FORMAT and the reason: malformed JSON, a missing/mistyped field, an unknown key, a layer
 * out of range or listed twice, an empty cluster, a head out of range, listed twice or missing,
 * k outside 1..H. On success `plan` owns the result; on failure it is left empty. dims may be NULL.
 */
chai_status chai_heads_plan_parse(chai_heads_plan *plan, const char *json, size_t len,
                                  const chai_heads_dims *dims);
/* Reads and parses a plan file; errors are prefixed with the path (CHAI_ERR_IO when unreadable). */
chai_status chai_heads_plan_load(chai_heads_plan *plan, const char *path,
                                 const chai_heads_dims *dims);
/* Serialises to JSON text (a new malloc'ed string the caller frees with free()). */
chai_status chai_heads_plan_to_json(char **out, const chai_heads_plan *plan);
chai_status chai_heads_plan_save(const chai_heads_plan *plan, const char *path);

/* Building a plan from arrays (used by the binding and by clustering code). init allocates
 * n_layers empty entries; set_clusters fills entry i from `clusters` concatenated heads with
 * `sizes` (k entries), first of each = representative; set_k makes entry i a k-only layer.
 * Entries must be filled before validate. Both copy their inputs. */
chai_status chai_heads_plan_init(chai_heads_plan *plan, int n_layers);
chai_status chai_heads_plan_set_clusters(chai_heads_plan *plan, int i, int layer, int n_heads,
                                         const int *heads, const int *sizes, int k);
chai_status chai_heads_plan_set_k(chai_heads_plan *plan, int i, int layer, int n_heads, int k);
/* Entry i from labels (H) of a clustering (any numbering): clusters ordered by lowest member,
 * representative = lowest-index head. */
chai_status chai_heads_plan_set_labels(chai_heads_plan *plan, int i, int layer, const int *labels,
                                       int n_heads);
/* Checks every rule parse checks (same messages, CHAI_ERR_ARG) and sorts the layers by index. */
chai_status chai_heads_plan_validate(chai_heads_plan *plan, const chai_heads_dims *dims);
/* The entry for `layer`, or NULL (dense). */
const chai_heads_layer *chai_heads_plan_find(const chai_heads_plan *plan, int layer);
/* A deep copy into `out` (which the caller then owns). */
chai_status chai_heads_plan_copy(chai_heads_plan *out, const chai_heads_plan *plan);
/* Frees everything; leaves an empty plan. Idempotent. */
void chai_heads_plan_free(chai_heads_plan *plan);

#ifdef __cplusplus
}
#endif
#endif
