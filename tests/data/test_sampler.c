/*
 * test_sampler.c - the sampler: per-epoch permutations are bijections that
 * change with the epoch, an epoch visits each sample once, rank slices
 * partition the global batch, random access equals walking forward, batches
 * mix sources by weight, and the RoPE rescale is log-uniform and keyed.
 */
#include <math.h>
#include <stdlib.h>

#include "data/sampler.h"
#include "tests/test.h"

static void permutations_are_bijections_that_change_per_epoch(void) {
    static const uint64_t sizes[] = {1, 2, 3, 10, 1000, 4097};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        uint64_t n = sizes[s];
        unsigned char *seen = calloc(n, 1);
        for (uint64_t epoch = 0; epoch < 3; epoch++) {
            memset(seen, 0, n);
            for (uint64_t p = 0; p < n; p++) {
                uint64_t id = data_permutation(5, 0, epoch, n, p);
                CHECK(id < n && !seen[id], "n %llu epoch %llu: position %llu gives %llu twice or out of range",
                      (unsigned long long)n, (unsigned long long)epoch, (unsigned long long)p, (unsigned long long)id);
                if (id < n) seen[id] = 1;
            }
        }
        free(seen);
    }
    int same_e = 0, same_seed = 0, fixed = 0;
    for (uint64_t p = 0; p < 1000; p++) {
        uint64_t a = data_permutation(5, 0, 0, 1000, p);
        same_e += a == data_permutation(5, 0, 1, 1000, p);
        same_seed += a == data_permutation(6, 0, 0, 1000, p);
        fixed += a == p;
    }
    CHECK(same_e < 10 && same_seed < 10 && fixed < 10, "permutations too alike: %d %d %d of 1000", same_e, same_seed,
          fixed);
}

static DataSampler make_sampler(uint64_t seed, int batch, int sources, const uint64_t *counts, const double *weights) {
    DataSampler s;
    DdError err;
    if (data_sampler_init(&s, seed, batch, counts, weights, sources, &err) != 0) abort();
    return s;
}

static void an_epoch_visits_each_sample_once(void) {
    uint64_t counts[1] = {100};
    double weights[1] = {1};
    DataSampler s = make_sampler(3, 10, 1, counts, weights);
    int seen[100] = {0};
    DataSampleRef refs[10];
    for (uint64_t k = 0; k < 10; k++) {
        data_sampler_slice(&s, k, 0, 10, refs);
        for (int i = 0; i < 10; i++) {
            CHECK(refs[i].epoch == 0 && refs[i].sample_id < 100, "iteration %llu", (unsigned long long)k);
            if (refs[i].sample_id < 100) seen[refs[i].sample_id]++;
        }
    }
    for (int i = 0; i < 100; i++) CHECK(seen[i] == 1, "sample %d seen %d times in epoch 0", i, seen[i]);
    data_sampler_slice(&s, 10, 0, 10, refs);
    CHECK(refs[0].epoch == 1, "iteration 10 should start epoch 1, found %llu", (unsigned long long)refs[0].epoch);
    /* a batch larger than the data set spans epochs */
    uint64_t small[1] = {3};
    DataSampler t = make_sampler(3, 8, 1, small, weights);
    DataSampleRef wide[8];
    data_sampler_slice(&t, 0, 0, 8, wide);
    CHECK(wide[0].epoch == 0 && wide[3].epoch == 1 && wide[7].epoch == 2, "epochs of a wide batch");
    data_sampler_destroy(&s);
    data_sampler_destroy(&t);
}

static void rank_slices_partition_the_global_batch(void) {
    uint64_t counts[2] = {1000, 300};
    double weights[2] = {0.7, 0.3};
    DataSampler s = make_sampler(9, 64, 2, counts, weights);
    DataSampleRef whole[64], part[64];
    for (uint64_t k = 0; k < 50; k++) {
        data_sampler_slice(&s, k, 0, 64, whole);
        static const int cuts[] = {0, 5, 16, 40, 64};
        for (int r = 0; r < 4; r++) {
            data_sampler_slice(&s, k, cuts[r], cuts[r + 1], part);
            CHECK(memcmp(part, whole + cuts[r], (size_t)(cuts[r + 1] - cuts[r]) * sizeof *part) == 0,
                  "iteration %llu rank %d slice differs", (unsigned long long)k, r);
        }
        for (int i = 1; i < 64; i++) CHECK(whole[i].source == whole[0].source, "a batch mixes sources");
    }
    data_sampler_destroy(&s);
}

static void random_access_equals_walking_forward(void) {
    uint64_t counts[2] = {5000, 700};
    double weights[2] = {0.9, 0.1};
    DataSampler forward = make_sampler(11, 8, 2, counts, weights), jumping = make_sampler(11, 8, 2, counts, weights);
    enum { K = 600 };
    DataSampleRef *walked = malloc((size_t)K * 8 * sizeof *walked);
    for (uint64_t k = 0; k < K; k++) data_sampler_slice(&forward, k, 0, 8, walked + k * 8);
    uint64_t order[] = {599, 3, 300, 0, 450, 451, 17, 598};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        DataSampleRef refs[8];
        data_sampler_slice(&jumping, order[i], 0, 8, refs);
        CHECK(memcmp(refs, walked + order[i] * 8, sizeof refs) == 0, "iteration %llu differs when reached by a jump",
              (unsigned long long)order[i]);
    }
    free(walked);
    data_sampler_destroy(&forward);
    data_sampler_destroy(&jumping);
}

static void batches_mix_sources_by_weight(void) {
    uint64_t counts[2] = {100000, 50};
    double weights[2] = {0.9, 0.1};
    DataSampler s = make_sampler(1, 10, 2, counts, weights);
    int from_second = 0, seen[50] = {0};
    enum { K = 20000 };
    for (uint64_t k = 0; k < K; k++) {
        uint64_t before = 0;
        int source = data_sampler_batch_source(&s, k, &before);
        if (source != 1) continue;
        DataSampleRef refs[10];
        data_sampler_slice(&s, k, 0, 10, refs);
        /* the small source's first epoch: its first 5 batches */
        if (from_second < 5)
            for (int i = 0; i < 10; i++) {
                CHECK(refs[i].sample_id >= 100000 && refs[i].epoch == 0, "source 1 ids follow source 0's");
                if (refs[i].sample_id >= 100000 && refs[i].sample_id < 100050) seen[refs[i].sample_id - 100000]++;
            }
        from_second++;
    }
    CHECK(fabs(from_second / (double)K - 0.1) < 0.01, "%d of %d batches from the 10%% source", from_second, K);
    for (int i = 0; i < 50; i++) CHECK(seen[i] == 1, "small-source sample %d seen %d times in its first epoch", i, seen[i]);
    data_sampler_destroy(&s);
}

static void rope_rescale_is_log_uniform_and_keyed(void) {
    double sum_log = 0, lo = 10, hi = 0;
    enum { N = 20000 };
    int same_as_other_size = 0;
    for (uint64_t k = 0; k < N; k++) {
        float s = data_rope_rescale(4, k, 0, 0.5f, 2.0f);
        CHECK(s >= 0.5f && s <= 2.0f, "rescale %g outside [0.5, 2]", s);
        CHECK(s == data_rope_rescale(4, k, 0, 0.5f, 2.0f), "not a pure function");
        same_as_other_size += s == data_rope_rescale(4, k, 1, 0.5f, 2.0f);
        sum_log += log(s);
        if (s < lo) lo = s;
        if (s > hi) hi = s;
    }
    CHECK(fabs(sum_log / N) < 0.02, "mean log rescale %g, expected about 0", sum_log / N);
    CHECK(lo < 0.52 && hi > 1.93, "range seen [%g, %g]", lo, hi);
    CHECK(same_as_other_size < 5, "crop sizes share their rescale %d times", same_as_other_size);
    CHECK(data_rope_rescale(4, 3, 0, 1.0f, 1.0f) == 1.0f, "an empty range gives its value");
}

TEST_MAIN(TEST(permutations_are_bijections_that_change_per_epoch), TEST(an_epoch_visits_each_sample_once),
          TEST(rank_slices_partition_the_global_batch), TEST(random_access_equals_walking_forward),
          TEST(batches_mix_sources_by_weight), TEST(rope_rescale_is_log_uniform_and_keyed))
