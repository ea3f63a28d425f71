/*
 * test_ibot_mask.c - the iBOT block masks of data/ibot_mask.h: a pure
 * function of (seed, epoch, sample, crop); half the crops masked; the
 * masked count floor(Np * ratio) with the ratio uniform in [0.1, 0.5];
 * masked patches in blocks rather than scattered; odd grids and the edges
 * of the config.
 */
#include <stdio.h>
#include <string.h>

#include "data/ibot_mask.h"
#include "tests/test.h"

static IbotMaskConfig defaults(void) {
    IbotMaskConfig c;
    DdError err = {{0}};
    CHECK(config_set_defaults(&ibot_mask_config_schema, &c, &err) == 0, "%s", err.message);
    return c;
}

static void the_defaults_are_the_recipe(void) {
    const IbotMaskConfig c = defaults();
    CHECK(c.probability == 0.5f && c.min_ratio == 0.1f && c.max_ratio == 0.5f && c.min_block_patches == 4 &&
              c.max_block_fraction == 0.5f && c.min_aspect == 0.3f,
          "defaults %g %g %g %d %g %g", c.probability, c.min_ratio, c.max_ratio, c.min_block_patches,
          c.max_block_fraction, c.min_aspect);
    CHECK(ibot_mask_max_count(&c, 256) == 128, "bound %d", ibot_mask_max_count(&c, 256));
}

static void a_mask_is_a_pure_function_of_its_key(void) {
    const IbotMaskConfig c = defaults();
    uint8_t a[256], b[256];
    int same_key_differs = 0, other_keys_equal = 0, masked = 0;
    for (uint64_t sample = 0; sample < 200; sample++) {
        const int count = ibot_mask_generate(&c, 7, 3, sample, 0, 16, 16, a);
        const int again = ibot_mask_generate(&c, 7, 3, sample, 0, 16, 16, b);
        same_key_differs += count != again || memcmp(a, b, sizeof a) != 0;
        if (!count) continue;
        masked++;
        /* another seed, epoch, sample or crop gives another mask */
        const int keys[4][4] = {{8, 3, 0, 0}, {7, 4, 0, 0}, {7, 3, 1000, 0}, {7, 3, 0, 1}};
        for (int k = 0; k < 4; k++) {
            ibot_mask_generate(&c, (uint64_t)keys[k][0], (uint64_t)keys[k][1], sample + (uint64_t)keys[k][2],
                               keys[k][3], 16, 16, b);
            other_keys_equal += memcmp(a, b, sizeof a) == 0;
        }
    }
    CHECK(same_key_differs == 0, "%d masks differ for the same key", same_key_differs);
    CHECK(other_keys_equal == 0, "%d masks equal under another key", other_keys_equal);
    CHECK(masked > 50, "only %d of 200 masked", masked);
}

/* Counts the masked patches and those with a masked 4-neighbour. */
static void count_neighbours(const uint8_t *mask, int Hp, int Wp, int *masked, int *with_neighbour) {
    for (int y = 0; y < Hp; y++)
        for (int x = 0; x < Wp; x++) {
            if (!mask[y * Wp + x]) continue;
            (*masked)++;
            const int near = (y > 0 && mask[(y - 1) * Wp + x]) || (y < Hp - 1 && mask[(y + 1) * Wp + x]) ||
                             (x > 0 && mask[y * Wp + x - 1]) || (x < Wp - 1 && mask[y * Wp + x + 1]);
            *with_neighbour += near;
        }
}

static void half_the_crops_hide_a_tenth_to_a_half_in_blocks(void) {
    const IbotMaskConfig c = defaults();
    enum { SAMPLES = 4000, HP = 16, WP = 16, NP = HP * WP };
    uint8_t mask[NP];
    int masked_crops = 0, smallest = NP, largest = 0, masked = 0, with_neighbour = 0;
    double ratio_sum = 0.0;
    for (int i = 0; i < SAMPLES; i++) {
        const int count = ibot_mask_generate(&c, 1, 0, (uint64_t)i, i % 2, HP, WP, mask);
        int ones = 0;
        for (int p = 0; p < NP; p++) ones += mask[p];
        CHECK(ones == count, "sample %d: returned %d, mask holds %d", i, count, ones);
        if (!count) continue;
        masked_crops++;
        smallest = count < smallest ? count : smallest;
        largest = count > largest ? count : largest;
        ratio_sum += (double)count / NP;
        count_neighbours(mask, HP, WP, &masked, &with_neighbour);
    }
    const double fraction = (double)masked_crops / SAMPLES, mean_ratio = ratio_sum / masked_crops;
    const double clustered = (double)with_neighbour / masked;
    printf("  %d crops of 16x16: %.3f masked, masked counts %d..%d, mean ratio %.3f, %.3f of masked patches "
           "touch another\n", SAMPLES, fraction, smallest, largest, mean_ratio, clustered);
    /* binomial(4000, 0.5): 3 sigma = 0.024 */
    CHECK(fraction > 0.476 && fraction < 0.524, "masked fraction %.3f", fraction);
    CHECK(smallest >= 25 && largest <= 128, "counts %d..%d, expected floor(256 * [0.1, 0.5])", smallest, largest);
    /* uniform ratio: mean 0.3 minus the floor's 0.5/256; sd of the mean ~0.0037 */
    CHECK(mean_ratio > 0.285 && mean_ratio < 0.31, "mean ratio %.4f", mean_ratio);
    /* scattered patches at ratio 0.3 touch another ~76% of the time; blocks nearly always */
    CHECK(clustered > 0.9, "only %.3f of masked patches have a masked neighbour: not blocks", clustered);
}

static void small_and_odd_grids_work(void) {
    const IbotMaskConfig c = defaults();
    const int grids[][2] = {{1, 1}, {2, 2}, {4, 4}, {3, 7}, {14, 14}, {7, 16}};
    for (size_t g = 0; g < sizeof grids / sizeof grids[0]; g++) {
        const int Hp = grids[g][0], Wp = grids[g][1], Np = Hp * Wp;
        uint8_t mask[256];
        for (uint64_t sample = 0; sample < 300; sample++) {
            memset(mask, 0xAB, sizeof mask);
            const int count = ibot_mask_generate(&c, 5, 1, sample, 0, Hp, Wp, mask);
            int ones = 0;
            for (int p = 0; p < Np; p++) ones += mask[p] == 1;
            CHECK(ones == count && count <= ibot_mask_max_count(&c, Np), "%dx%d sample %d: %d of %d", Hp, Wp,
                  (int)sample, ones, count);
            CHECK(mask[Np] == 0xAB, "%dx%d: wrote past the grid", Hp, Wp);
        }
    }
}

static void probability_and_ratio_edges(void) {
    IbotMaskConfig c = defaults();
    uint8_t mask[64];
    c.probability = 0.0f;
    int any = 0;
    for (uint64_t i = 0; i < 100; i++) any += ibot_mask_generate(&c, 2, 0, i, 0, 8, 8, mask) != 0;
    CHECK(any == 0, "probability 0 masked %d crops", any);
    c.probability = 1.0f;
    c.min_ratio = c.max_ratio = 0.5f;
    for (uint64_t i = 0; i < 100; i++)
        CHECK(ibot_mask_generate(&c, 2, 0, i, 0, 8, 8, mask) == 32, "ratio 0.5 of 64 patches");

    const char bad[] = "min_ratio: 0.4\nmax_ratio: 0.2\n";
    DdError err = {{0}};
    CHECK(config_load_text(&ibot_mask_config_schema, &c, bad, sizeof bad - 1, "mask.yaml", &err) == -1,
          "max_ratio < min_ratio accepted");
    CHECK(strcmp(err.message, "mask.yaml:2:12: expected max_ratio >= min_ratio (0.4), found 0.2") == 0, "%s",
          err.message);
}

TEST_MAIN(TEST(the_defaults_are_the_recipe), TEST(a_mask_is_a_pure_function_of_its_key),
          TEST(half_the_crops_hide_a_tenth_to_a_half_in_blocks), TEST(small_and_odd_grids_work),
          TEST(probability_and_ratio_edges))
