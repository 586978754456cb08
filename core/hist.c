/* hist: see hist.h. */
#include "hist.h"

const hist_bound_t hist_bounds[HIST_NBOUNDS] = {
    {50000, "5e-05"},   {100000, "0.0001"},   {250000, "0.00025"},
    {500000, "0.0005"}, {1000000, "0.001"},   {2500000, "0.0025"},
    {5000000, "0.005"}, {10000000, "0.01"},   {25000000, "0.025"},
    {50000000, "0.05"}, {100000000, "0.1"},   {250000000, "0.25"},
    {500000000, "0.5"}, {1000000000, "1"},    {2500000000u, "2.5"},
    {5000000000u, "5"}, {10000000000u, "10"},
};

static hist_t hists[HIST_N];

void hist_observe(hist_kind_t which, uint64_t ns) {
  hist_t *h = &hists[which];
  size_t i = 0;
  while (i < HIST_NBOUNDS && ns > hist_bounds[i].ns)
    i++;
  h->bucket[i]++;
  h->count++;
  h->sum_ns += ns;
}

const hist_t *hist_get(hist_kind_t which) {
  return &hists[which];
}
