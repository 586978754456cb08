/* places_test: the places index against a brute-force scan, and against
 * damaged files. Includes core/places.c itself to reach the mapped records.
 *
 *   build/test/places_test FILE [QUERIES]   cross-check QUERIES random
 *                                            queries (default 2000)
 *   build/test/places_test --fuzz FILE [N]   N damaged copies (default 3000)
 *                                            must fail to open or answer
 *                                            safely; truncations must fail
 *   build/test/places_test --time FILE       open time and time per query
 *   build/test/places_test --json            the JSON writer's numbers and
 *                                            string escapes against printf
 *                                            and a byte-by-byte reference
 *
 * Prints one summary line; exits 0 when every check passed. Run it under
 * SANITIZE=1 (make -C tests/c SANITIZE=1) to catch any read outside the map. */
#include "../../core/places.c"

#include <time.h>

static int failures;

#define CHECK(cond, ...)                                     \
  do {                                                       \
    if (!(cond)) {                                           \
      failures++;                                            \
      if (failures <= 20) {                                  \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                        \
        fputc('\n', stderr);                                 \
      }                                                      \
    }                                                        \
  } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) { /* xorshift64* */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 2685821657736338717ull;
}
static double uniform(double lo, double hi) {
  return lo + (hi - lo) * (double)(next_u64() >> 11) / 9007199254740992.0;
}

/* Haversine, independent of the chord arithmetic under test. */
static double haversine_m(double lat1, double lon1, double lat2, double lon2) {
  const double d = PLACES_PI / 180;
  double dp = (lat2 - lat1) * d, dl = (lon2 - lon1) * d;
  double a = sin(dp / 2) * sin(dp / 2) +
             cos(lat1 * d) * cos(lat2 * d) * sin(dl / 2) * sin(dl / 2);
  return 2 * PLACES_EARTH_RADIUS_M * asin(sqrt(a < 1 ? a : 1));
}

typedef struct ref {
  double d;
  uint32_t idx;
} ref_t;

static int ref_cmp(const void *a, const void *b) {
  const ref_t *x = a, *y = b;
  if (x->d != y->d) return x->d < y->d ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* One random query point: anywhere, or near a pole, the 180th meridian, a
 * cell corner, or an actual place. */
static void pick_point(double *lat, double *lon) {
  uint32_t n = pl.h->count;
  switch (next_u64() % 6) {
    case 0:
      *lat = uniform(-90, 90), *lon = uniform(-180, 180);
      break;
    case 1:
      *lat = uniform(85, 90) * (next_u64() % 2 ? 1 : -1),
      *lon = uniform(-180, 180);
      break;
    case 2: /* either side of the 180th meridian */
      *lat = uniform(-80, 80);
      *lon = next_u64() % 2 ? 180 - uniform(0, 0.5) : -180 + uniform(0, 0.5);
      break;
    case 3:
      *lat = (double)(int)uniform(-89, 89),
      *lon = (double)(int)uniform(-179, 180);
      break;
    default: {
      const places_rec_t *r = &pl.recs[next_u64() % n];
      *lat = r->lat_e5 / 1e5 + uniform(-0.3, 0.3);
      *lon = r->lon_e5 / 1e5 + uniform(-0.3, 0.3);
      if (*lat > 90) *lat = 90;
      if (*lat < -90) *lat = -90;
      if (*lon > 180) *lon -= 360;
      if (*lon < -180) *lon += 360;
    }
  }
  if (*lon < -180) *lon = -180;
  if (*lon > 180) *lon = 180;
}

static double pick_radius(void) {
  switch (next_u64() % 4) {
    case 0:
      return uniform(1, 1000);
    case 1:
      return uniform(1000, 50000);
    case 2:
      return uniform(50000, 1000000);
    default:
      return uniform(1000000, 2.2e7);
  }
}

static int cross_check(const char *path, int queries) {
  char err[512];
  if (places_open(path, err, sizeof err) < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  uint32_t n = pl.h->count;
  ref_t *all = xmalloc(sizeof *all * n);
  places_hit_t *hits = xmalloc(sizeof *hits * PLACES_MAX_LIMIT);
  long compared = 0;
  for (int q = 0; q < queries; q++) {
    double lat, lon;
    pick_point(&lat, &lon);
    double radius = pick_radius();
    int limit = (int)(next_u64() % 3 == 0 ? next_u64() % 200 : next_u64() % 21);
    int got = places_query(lat, lon, radius, limit, hits, err, sizeof err);
    CHECK(got >= 0, "query %f %f %f %d: %s", lat, lon, radius, limit, err);
    if (got < 0) continue;
    /* Brute force with the independent formula; places within a metre of
     * the radius may fall either way. */
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
      const places_rec_t *r = &pl.recs[i];
      double d = haversine_m(lat, lon, r->lat_e5 / 1e5, r->lon_e5 / 1e5);
      if (d <= radius + 1) all[m++] = (ref_t){d, i};
    }
    qsort(all, m, sizeof *all, ref_cmp);
    uint32_t must = 0; /* clearly inside */
    for (uint32_t i = 0; i < m; i++)
      if (all[i].d <= radius - 1) must++;
    uint32_t want_min = must < (uint32_t)limit ? must : (uint32_t)limit;
    uint32_t want_max = m < (uint32_t)limit ? m : (uint32_t)limit;
    CHECK((uint32_t)got >= want_min && (uint32_t)got <= want_max,
          "query (%f, %f) r=%f limit=%d: %d results, want %u..%u", lat, lon,
          radius, limit, got, want_min, want_max);
    for (int k = 0; k < got; k++) {
      double d =
          haversine_m(lat, lon, hits[k].lat_e5 / 1e5, hits[k].lon_e5 / 1e5);
      CHECK(fabs(d - hits[k].distance_m) < 0.01 + d * 1e-9,
            "distance of %s: %f, haversine %f", hits[k].name,
            hits[k].distance_m, d);
      CHECK(hits[k].distance_m <= radius + 1, "%s beyond the radius",
            hits[k].name);
      if (k > 0)
        CHECK(hits[k].distance_m >= hits[k - 1].distance_m - 1e-6,
              "not sorted at %d", k);
      /* Same distance as the brute force's k-th (up to rounding). */
      if ((uint32_t)k < m)
        CHECK(fabs(all[k].d - hits[k].distance_m) < 0.01 + all[k].d * 1e-9,
              "query (%f, %f) r=%f: result %d at %f m, brute force %f m", lat,
              lon, radius, k, hits[k].distance_m, all[k].d);
      compared++;
    }
  }
  printf("places_test: %s: %d queries, %ld results compared, %d failures\n",
         path, queries, compared, failures);
  free(all);
  free(hits);
  places_close();
  return failures != 0;
}

static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *p = xmalloc((size_t)n);
  if (fread(p, 1, (size_t)n, f) != (size_t)n) n = 0;
  fclose(f);
  *len = (size_t)n;
  return p;
}

static void spit(const char *path, const unsigned char *p, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(2);
  }
  fwrite(p, 1, len, f);
  fclose(f);
}

/* Queries an accepted (possibly damaged) file everywhere it might break. */
static void poke(void) {
  places_hit_t hits[50];
  char err[256];
  static const double pts[][3] = {{34.07, -118.44, 50000}, {90, 0, 500000},
                                  {-90, 0, 500000},        {0, 180, 100000},
                                  {0, -180, 100000},       {12, 34, 2.2e7},
                                  {-17.5, 179.99, 300000}, {45, 45, 1}};
  for (size_t i = 0; i < sizeof pts / sizeof pts[0]; i++) {
    int n = places_query(pts[i][0], pts[i][1], pts[i][2], 50, hits, err,
                         sizeof err);
    for (int k = 0; k < n; k++) /* reads every string */
      CHECK(strlen(hits[k].name) + strlen(hits[k].admin1) +
                    strlen(hits[k].admin2) <
                (size_t)-1,
            "strings");
  }
}

static int fuzz(const char *path, int rounds) {
  size_t len;
  unsigned char *orig = slurp(path, &len);
  if (!orig || len < sizeof(places_header_t)) {
    fprintf(stderr, "cannot read %s\n", path);
    return 1;
  }
  char tmp[] = "/tmp/places_fuzz_XXXXXX";
  int fd = mkstemp(tmp);
  if (fd < 0) return 1;
  close(fd);
  char err[512];
  unsigned char *p = xmalloc(len);
  int accepted = 0, rejected = 0;

  /* Every truncation point that matters, and some others: all must fail. */
  size_t cuts[] = {0, 1, 8, 95, 96, 97, 200, len / 2, len - 8, len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    spit(tmp, orig, cuts[i]);
    int rc = places_open(tmp, err, sizeof err);
    CHECK(rc < 0, "truncated at %zu bytes: accepted", cuts[i]);
    CHECK(rc < 0 && strstr(err, tmp) != NULL, "message names the file: %s",
          err);
    if (rc < 0) rejected++;
  }
  /* An extra byte is a length mismatch too. */
  unsigned char *longer = xmalloc(len + 1);
  memcpy(longer, orig, len);
  longer[len] = 0;
  spit(tmp, longer, len + 1);
  CHECK(places_open(tmp, err, sizeof err) < 0, "over-long file accepted");
  free(longer);

  /* Random damage: 1 to 4 bytes, in the header, in the records and
   * strings (past the cell table, which is most of a small file), or
   * anywhere. */
  const places_header_t *h = (const places_header_t *)orig;
  size_t tail = h->records_off < len ? (size_t)h->records_off : 0;
  for (int r = 0; r < rounds; r++) {
    memcpy(p, orig, len);
    int nflip = 1 + (int)(next_u64() % 4);
    for (int k = 0; k < nflip; k++) {
      size_t at;
      switch (next_u64() % 3) {
        case 0:
          at = next_u64() % sizeof(places_header_t);
          break;
        case 1:
          at = tail + next_u64() % (len - tail);
          break;
        default:
          at = next_u64() % len;
      }
      p[at] = (unsigned char)(next_u64() % 4 ? next_u64() : p[at] ^ 0x80);
    }
    spit(tmp, p, len);
    if (places_open(tmp, err, sizeof err) == 0) {
      accepted++;
      poke();
      places_close();
    } else {
      rejected++;
    }
  }
  /* A directory and a missing file. */
  CHECK(places_open("/tmp", err, sizeof err) < 0, "a directory accepted");
  CHECK(places_open("/nonexistent/places.bin", err, sizeof err) < 0,
        "a missing file accepted");
  /* Nothing open: queries fail cleanly. */
  places_hit_t hit;
  CHECK(places_query(0, 0, 1000, 1, &hit, err, sizeof err) < 0 &&
            strcmp(err, "no places data loaded") == 0,
        "query without data: %s", err);
  unlink(tmp);
  free(p);
  free(orig);
  printf(
      "places_test: fuzz %s: %d damaged files rejected, %d accepted and "
      "queried safely, %d failures\n",
      path, rejected, accepted, failures);
  return failures != 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int timing(const char *path) {
  char err[512];
  double t0 = now_s();
  if (places_open(path, err, sizeof err) < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  double t_open = now_s() - t0;
  /* Query points near real places (the expensive, dense case). */
  enum { N = 20000 };
  static double qs[N][2];
  for (int i = 0; i < N; i++) {
    const places_rec_t *r = &pl.recs[next_u64() % pl.h->count];
    qs[i][0] = r->lat_e5 / 1e5 + uniform(-0.05, 0.05);
    qs[i][1] = r->lon_e5 / 1e5 + uniform(-0.05, 0.05);
    if (qs[i][0] > 90) qs[i][0] = 90;
    if (qs[i][0] < -90) qs[i][0] = -90;
    if (qs[i][1] > 180) qs[i][1] = 180;
    if (qs[i][1] < -180) qs[i][1] = -180;
  }
  static const double radii[] = {10000, 50000};
  places_hit_t hits[20];
  printf("places_test: %s: %u places, open+validate %.2f ms\n", path,
         pl.h->count, t_open * 1e3);
  for (size_t k = 0; k < 2; k++) {
    long found = 0;
    t0 = now_s();
    for (int i = 0; i < N; i++)
      found +=
          places_query(qs[i][0], qs[i][1], radii[k], 20, hits, err, sizeof err);
    double dt = now_s() - t0;
    printf(
        "places_test: radius %.0f km, limit 20: %.2f us per query "
        "(C only, %.1f results on average)\n",
        radii[k] / 1000, dt / N * 1e6, (double)found / N);
  }
  places_close();
  return 0;
}

/* json_e5 must print what "%.14g" prints for v / 1e5 (the table path's
 * writers do that); json_str must escape exactly ", \\, the bytes below
 * 0x20 and 0x7f, the way places/json.lua's writer does. */
static void check_e5(int32_t v) {
  char want[32], got[32];
  snprintf(want, sizeof want, "%.14g", v / 1e5);
  *json_e5(got, v) = '\0';
  CHECK(strcmp(want, got) == 0, "json_e5(%d): %s, printf %s", (int)v, got,
        want);
}

static int json_check(void) {
  long n = 0;
  for (int32_t v = -1000000; v <= 1000000; v++, n++)
    check_e5(v);
  static const int32_t edges[] = {-18000000, 18000000, -9000000, 9000000,
                                  -17999999, 17999999, 10000000, -10000000};
  for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++, n++)
    check_e5(edges[k]);
  for (int k = 0; k < 1000000; k++, n++)
    check_e5((int32_t)(next_u64() % 36000001) - 18000000);

  static const char *const named = "\"\\\b\f\n\r\t";
  static const char *const letter = "\"\\bfnrt";
  for (int c = 1; c < 256; c++) {
    char in[4] = {'a', (char)c, 'z', 0}, out[32], want[32];
    *json_str(out, in) = '\0';
    const char *at = strchr(named, c);
    if (at)
      snprintf(want, sizeof want, "a\\%cz", letter[at - named]);
    else if (c < 0x20 || c == 0x7f)
      snprintf(want, sizeof want, "a\\u%04xz", c);
    else
      snprintf(want, sizeof want, "a%cz", c);
    CHECK(strcmp(out, want) == 0, "json_str byte %d: %s, want %s", c, out,
          want);
  }
  char out[64];
  *json_str(out, "") = '\0';
  CHECK(out[0] == 0, "json_str of \"\"");
  *json_str(out, "\xe6\x97\xa5\"\x01") = '\0';
  CHECK(strcmp(out, "\xe6\x97\xa5\\\"\\u0001") == 0, "json_str mixed: %s", out);
  printf("places_test: json: %ld numbers and 255 bytes checked, %d failures\n",
         n, failures);
  return failures != 0;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "--fuzz") == 0)
    return fuzz(argv[2], argc > 3 ? atoi(argv[3]) : 3000);
  if (argc >= 3 && strcmp(argv[1], "--time") == 0) return timing(argv[2]);
  if (argc >= 2 && strcmp(argv[1], "--json") == 0) return json_check();
  if (argc >= 2 && argv[1][0] != '-')
    return cross_check(argv[1], argc > 2 ? atoi(argv[2]) : 2000);
  fprintf(stderr,
          "usage: places_test FILE [QUERIES] | --fuzz FILE [N] | --time FILE | "
          "--json\n");
  return 2;
}
