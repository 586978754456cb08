/* places: see places.h.
 *
 * File format (version 1, little-endian, every section 8-byte aligned),
 * written by tools/places-convert.lua:
 *
 *   header   96 bytes, places_header_t below
 *   cells    (rows * cols + 1) uint32: cell i holds the records
 *            [cells[i], cells[i + 1]); cells are rows of latitude from -90
 *            northwards, each row of longitude from -180 eastwards (1 degree
 *            by 1 degree for 180 x 360)
 *   records  count places_rec_t, sorted by cell, then latitude, then id
 *   strings  NUL-terminated UTF-8 strings (names, admin names, the source
 *            line); the section ends with a NUL
 *
 * Each record carries its position twice: as integer 1e-5 degrees (the
 * precision of GeoNames, what the answers show) and as a unit vector, so
 * that the distance test of a query is three subtractions and three
 * multiplications (the squared chord), with no trigonometry per place. The
 * chord is monotonic in the great-circle distance, which is computed only
 * for the places that are returned. */
#include "places.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

#ifndef HERD_DATA_DIR
#define HERD_DATA_DIR "data"
#endif

#define PLACES_MAGIC "HERDPLC1"
#define PLACES_BOM 0x01020304u
#define PLACES_VERSION 1u
#define PLACES_MAX_CELLS (3600u * 7200u) /* a 0.05-degree grid at most */
#define PLACES_PI 3.14159265358979323846

typedef struct places_header {
  char magic[8];        /* "HERDPLC1" */
  uint32_t bom;         /* 0x01020304: the writer's byte order */
  uint32_t version;     /* PLACES_VERSION */
  uint32_t header_size; /* sizeof(places_header_t) */
  uint32_t record_size; /* sizeof(places_rec_t) */
  uint32_t count;       /* records */
  uint32_t rows, cols;  /* grid: rows of 180/rows degrees of latitude */
  uint32_t source_off;  /* strings offset of the source/licence line */
  uint64_t cells_off;   /* file offsets of the sections */
  uint64_t records_off;
  uint64_t strings_off;
  uint64_t strings_size;
  uint64_t file_size; /* the whole file, to catch truncation */
  uint64_t reserved[2];
} places_header_t;

typedef struct places_rec {
  /* Unit vector (cos lat cos lon, cos lat sin lon, sin lat). */
  double x, y, z;
  int32_t lat_e5, lon_e5; /* degrees * 1e5 */
  uint32_t name_off;      /* strings offsets */
  uint32_t admin1_off;
  uint32_t admin2_off;
  char country[2]; /* ISO 3166-1 alpha-2, or two NULs */
  uint16_t flags;  /* 0; reserved */
  uint64_t id;     /* FNV-1a 64 of the source entry */
} places_rec_t;

_Static_assert(sizeof(places_header_t) == 96, "places header layout");
_Static_assert(sizeof(places_rec_t) == 56, "places record layout");

/* The open file. */
static struct {
  void *map;
  size_t size;
  const places_header_t *h;
  const uint32_t *cells;
  const places_rec_t *recs;
  const char *strings;
  double cell_h, cell_w; /* degrees per row, per column */
  char *path;
} pl;

static int open_tried; /* places_open was called, by the core or lazily */

/* ---- opening --------------------------------------------------------- */

static int section_ok(uint64_t off, uint64_t len, uint64_t size) {
  return off % 8 == 0 && off <= size && len <= size - off;
}

/* The cell a record belongs in, by the integer rule the converter uses. */
static uint32_t cell_of(int32_t lat_e5, int32_t lon_e5, uint32_t rows,
                        uint32_t cols) {
  int64_t r = ((int64_t)lat_e5 + 9000000) * rows / 18000000;
  int64_t c = ((int64_t)lon_e5 + 18000000) * cols / 36000000;
  if (r >= rows) r = rows - 1;
  if (c >= cols) c = cols - 1;
  return (uint32_t)(r * cols + c);
}

/* Checks everything a query relies on, so that no file can make a query
 * read outside the map. Returns NULL or what is wrong. */
static const char *validate(const unsigned char *base, size_t size,
                            const places_header_t *h) {
  if (size < sizeof *h) return "too short for a places header (truncated?)";
  if (memcmp(h->magic, PLACES_MAGIC, 8) != 0) return "not a herd places file";
  if (h->bom != PLACES_BOM) return "written with another byte order";
  if (h->version != PLACES_VERSION) return "unsupported places file version";
  if (h->header_size != sizeof *h || h->record_size != sizeof(places_rec_t))
    return "header or record size does not match this build";
  if (h->file_size != size)
    return "length does not match its header (truncated?)";
  if (h->rows == 0 || h->cols == 0 || h->rows > 3600 || h->cols > 7200 ||
      (uint64_t)h->rows * h->cols > PLACES_MAX_CELLS)
    return "bad grid size";
  uint64_t ncells = (uint64_t)h->rows * h->cols;
  if (!section_ok(h->cells_off, (ncells + 1) * 4, size) ||
      !section_ok(h->records_off, (uint64_t)h->count * sizeof(places_rec_t),
                  size) ||
      !section_ok(h->strings_off, h->strings_size, size) ||
      h->cells_off < sizeof *h || h->records_off < sizeof *h ||
      h->strings_off < sizeof *h)
    return "a section lies outside the file";
  if (h->strings_size == 0 || h->strings_size > UINT32_MAX ||
      base[h->strings_off + h->strings_size - 1] != '\0')
    return "string section not terminated";
  if (h->source_off >= h->strings_size) return "bad source string offset";

  const uint32_t *cells = (const uint32_t *)(base + h->cells_off);
  const places_rec_t *recs = (const places_rec_t *)(base + h->records_off);
  if (cells[0] != 0 || cells[ncells] != h->count) return "bad cell table";
  for (uint64_t i = 0; i < ncells; i++)
    if (cells[i] > cells[i + 1]) return "bad cell table";
  uint64_t ssize = h->strings_size;
  uint32_t cell = 0;
  for (uint32_t i = 0; i < h->count; i++) {
    const places_rec_t *r = &recs[i];
    if (r->name_off >= ssize || r->admin1_off >= ssize ||
        r->admin2_off >= ssize)
      return "bad string offset in a record";
    if (r->lat_e5 < -9000000 || r->lat_e5 > 9000000 || r->lon_e5 < -18000000 ||
        r->lon_e5 > 18000000)
      return "coordinates out of range in a record";
    double n2 = r->x * r->x + r->y * r->y + r->z * r->z;
    if (!(fabs(n2 - 1) < 1e-9)) return "bad position vector in a record";
    while (cells[cell + 1] <= i)
      cell++;
    if (cell_of(r->lat_e5, r->lon_e5, h->rows, h->cols) != cell)
      return "a record is filed in the wrong cell";
    if (i > cells[cell] && recs[i - 1].lat_e5 > r->lat_e5)
      return "records not sorted by latitude within a cell";
  }
  return NULL;
}

int places_open(const char *path, char *err, size_t errlen) {
  open_tried = 1;
  if (!path) path = places_default_path();
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "places data %s: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "places data %s: not a regular file", path);
    close(fd);
    return -1;
  }
  size_t size = (size_t)st.st_size;
  if (size < sizeof(places_header_t)) {
    snprintf(err, errlen,
             "places data %s: too short for a places header "
             "(truncated?)",
             path);
    close(fd);
    return -1;
  }
  /* MAP_POPULATE reads the file in one go: validation touches every page
   * anyway, and queries then never fault. */
  void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  int map_errno = errno;
  close(fd);
  if (map == MAP_FAILED) {
    snprintf(err, errlen, "places data %s: mmap: %s", path,
             strerror(map_errno));
    return -1;
  }
  const places_header_t *h = map;
  const char *why = validate(map, size, h);
  if (why) {
    snprintf(err, errlen, "places data %s: %s", path, why);
    munmap(map, size);
    return -1;
  }
  char *owned = xstrdup(path); /* path may be places_path() itself */
  places_close();
  const unsigned char *base = map;
  pl.map = map;
  pl.size = size;
  pl.h = h;
  pl.cells = (const uint32_t *)(base + h->cells_off);
  pl.recs = (const places_rec_t *)(base + h->records_off);
  pl.strings = (const char *)(base + h->strings_off);
  pl.cell_h = 180.0 / h->rows;
  pl.cell_w = 360.0 / h->cols;
  pl.path = owned;
  return 0;
}

void places_close(void) {
  if (pl.map) munmap(pl.map, pl.size);
  free(pl.path);
  memset(&pl, 0, sizeof pl);
}

const char *places_default_path(void) {
  static char path[4096];
  const char *dir = getenv("HERD_DATA_DIR");
  if (!dir || !*dir) dir = HERD_DATA_DIR;
  snprintf(path, sizeof path, "%s/places.bin", dir);
  if (access(path, R_OK) == 0) return path;
  snprintf(path, sizeof path, "%s/places-sample.bin", dir);
  return path;
}

const char *places_path(void) {
  return pl.path;
}

uint32_t places_count(void) {
  return pl.h ? pl.h->count : 0;
}

const char *places_source(void) {
  return pl.h ? pl.strings + pl.h->source_off : "";
}

/* ---- queries --------------------------------------------------------- */

/* A bounded max-heap of the nearest candidates so far, keyed by squared
 * chord, then record index (so ties go to file order). */
typedef struct cand {
  double c2;
  uint32_t idx;
} cand_t;

typedef struct heap {
  cand_t *v;
  int len, cap;
} heap_t;

static int cand_less(const cand_t *a, const cand_t *b) {
  return a->c2 < b->c2 || (a->c2 == b->c2 && a->idx < b->idx);
}

static void heap_sift_down(heap_t *hp, int i) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < hp->len && cand_less(&hp->v[m], &hp->v[l])) m = l;
    if (r < hp->len && cand_less(&hp->v[m], &hp->v[r])) m = r;
    if (m == i) return;
    cand_t t = hp->v[i];
    hp->v[i] = hp->v[m];
    hp->v[m] = t;
    i = m;
  }
}

static void heap_offer(heap_t *hp, double c2, uint32_t idx) {
  cand_t c = {c2, idx};
  if (hp->len < hp->cap) {
    int i = hp->len++;
    while (i > 0) {
      int p = (i - 1) / 2;
      if (!cand_less(&hp->v[p], &c)) break;
      hp->v[i] = hp->v[p];
      i = p;
    }
    hp->v[i] = c;
  } else if (cand_less(&c, &hp->v[0])) {
    hp->v[0] = c;
    heap_sift_down(hp, 0);
  }
}

/* Offers every record of cell whose squared chord to (x, y, z) is within
 * c2max, reading only the records whose latitude lies in [lo_e5, hi_e5]. */
static void scan_cell(heap_t *hp, uint32_t cell, int32_t lo_e5, int32_t hi_e5,
                      double x, double y, double z, double c2max) {
  uint32_t a = pl.cells[cell], b = pl.cells[cell + 1];
  while (a < b) { /* first record with lat_e5 >= lo_e5 */
    uint32_t m = a + (b - a) / 2;
    if (pl.recs[m].lat_e5 < lo_e5)
      a = m + 1;
    else
      b = m;
  }
  for (uint32_t i = a, end = pl.cells[cell + 1]; i < end; i++) {
    const places_rec_t *r = &pl.recs[i];
    if (r->lat_e5 > hi_e5) break;
    double dx = r->x - x, dy = r->y - y, dz = r->z - z;
    double c2 = dx * dx + dy * dy + dz * dz;
    if (c2 <= c2max) heap_offer(hp, c2, i);
  }
}

static int clampi(int v, int lo, int hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

int places_query(double lat, double lon, double radius_m, int limit,
                 places_hit_t *out, char *err, size_t errlen) {
  if (!pl.map) {
    snprintf(err, errlen, "no places data loaded");
    return -1;
  }
  if (!(lat >= -90 && lat <= 90) || !(lon >= -180 && lon <= 180)) {
    snprintf(err, errlen, "location out of range");
    return -1;
  }
  if (!(radius_m > 0)) {
    snprintf(err, errlen, "radius must be > 0");
    return -1;
  }
  if (limit < 0 || limit > PLACES_MAX_LIMIT) {
    snprintf(err, errlen, "limit must be 0 to %d", PLACES_MAX_LIMIT);
    return -1;
  }
  if (limit == 0) return 0;

  const double deg = PLACES_PI / 180;
  double ang = radius_m / PLACES_EARTH_RADIUS_M; /* radians */
  if (ang > PLACES_PI) ang = PLACES_PI;
  double s = sin(ang / 2), c2max = 4 * s * s;
  double x = cos(lat * deg) * cos(lon * deg),
         y = cos(lat * deg) * sin(lon * deg), z = sin(lat * deg);

  /* The circle's latitude band, widened a hair against rounding. */
  double dlat = ang / deg + 1e-6;
  double lat_lo = lat - dlat, lat_hi = lat + dlat;
  /* Its longitude half-width: the spherical cap spans asin(sin r / cos lat)
   * either side, unless it holds a pole and so every longitude. */
  int all_lon = lat_lo <= -90 || lat_hi >= 90;
  double dlon = 180;
  if (!all_lon) {
    double sr = sin(ang), cl = cos(lat * deg);
    if (ang >= PLACES_PI / 2 || sr >= cl)
      all_lon = 1;
    else
      dlon = asin(sr / cl) / deg + 1e-6;
  }
  int rows = (int)pl.h->rows, cols = (int)pl.h->cols;
  int r0 = clampi((int)floor((lat_lo + 90) / pl.cell_h), 0, rows - 1);
  int r1 = clampi((int)floor((lat_hi + 90) / pl.cell_h), 0, rows - 1);
  int c0 = 0, c1 = cols - 1;
  if (!all_lon) {
    c0 = (int)floor((lon - dlon + 180) / pl.cell_w);
    c1 = (int)floor((lon + dlon + 180) / pl.cell_w);
    if (c1 - c0 + 1 >= cols) { /* wider than the world: every column */
      c0 = 0;
      c1 = cols - 1;
    }
  }
  int32_t lo_e5 = (int32_t)floor(fmax(lat_lo, -90) * 1e5) - 1;
  int32_t hi_e5 = (int32_t)ceil(fmin(lat_hi, 90) * 1e5) + 1;

  cand_t stack[PLACES_STACK_LIMIT];
  heap_t hp = {stack, 0, limit};
  if (limit > PLACES_STACK_LIMIT) hp.v = xmalloc(sizeof(cand_t) * limit);
  for (int r = r0; r <= r1; r++)
    for (int c = c0; c <= c1; c++) {
      int cc = ((c % cols) + cols) % cols; /* wraps across the 180th meridian */
      scan_cell(&hp, (uint32_t)(r * cols + cc), lo_e5, hi_e5, x, y, z, c2max);
    }

  /* Pops the farthest first, filling out from the back. */
  int n = hp.len;
  for (int k = n - 1; k >= 0; k--) {
    cand_t top = hp.v[0];
    hp.v[0] = hp.v[--hp.len];
    heap_sift_down(&hp, 0);
    const places_rec_t *rec = &pl.recs[top.idx];
    places_hit_t *o = &out[k];
    o->name = pl.strings + rec->name_off;
    o->admin1 = pl.strings + rec->admin1_off;
    o->admin2 = pl.strings + rec->admin2_off;
    o->country[0] = rec->country[0];
    o->country[1] = rec->country[0] ? rec->country[1] : '\0';
    o->country[2] = '\0';
    o->lat_e5 = rec->lat_e5;
    o->lon_e5 = rec->lon_e5;
    double half = sqrt(top.c2) / 2;
    o->distance_m = 2 * asin(half < 1 ? half : 1) * PLACES_EARTH_RADIUS_M;
    o->id = rec->id;
  }
  if (hp.v != stack) free(hp.v);
  return n;
}

/* ---- Lua --------------------------------------------------------------- */

/* Field names, kept as upvalues of places_near so that building a result
 * hashes no key (a query's cost is mostly these tables). */
static const char *const lua_keys[] = {"name",   "lat",    "lon", "country",
                                       "admin1", "admin2", "id",  "distance_m"};
enum {
  K_NAME = 1,
  K_LAT,
  K_LON,
  K_COUNTRY,
  K_ADMIN1,
  K_ADMIN2,
  K_ID,
  K_DIST,
  K_COUNT = K_DIST
};

static void set_str(lua_State *L, int key, const char *v, size_t len) {
  lua_pushvalue(L, lua_upvalueindex(key));
  lua_pushlstring(L, v, len);
  lua_rawset(L, -3);
}

static void set_num(lua_State *L, int key, double v) {
  lua_pushvalue(L, lua_upvalueindex(key));
  lua_pushnumber(L, v);
  lua_rawset(L, -3);
}

/* Runs a query for places_near / places_json: checks the arguments, opens
 * the default file lazily, and on success leaves hits in *out (the stack
 * buffer, or a userdata pushed on L for large limits) and returns the
 * count; on failure pushes nil, err and returns -1. */
static int lua_query(lua_State *L, lua_Integer limit, places_hit_t *stack,
                     places_hit_t **out) {
  double lat = luaL_checknumber(L, 1);
  double lon = luaL_checknumber(L, 2);
  double radius = luaL_checknumber(L, 3);
  char err[512];
  if (!pl.map && !open_tried) {
    if (places_open(NULL, err, sizeof err) < 0) log_warn("%s", err);
  }
  if (limit < 0 || limit > PLACES_MAX_LIMIT) {
    lua_pushnil(L);
    lua_pushfstring(L, "limit must be 0 to %d", PLACES_MAX_LIMIT);
    return -1;
  }
  /* Large answers go in a userdata so that nothing leaks if building the
   * answer raises (the state's memory cap). */
  places_hit_t *hits = stack;
  if (limit > PLACES_STACK_LIMIT)
    hits = lua_newuserdatauv(L, sizeof *hits * (size_t)limit, 0);
  int n = places_query(lat, lon, radius, (int)limit, hits, err, sizeof err);
  if (n < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return -1;
  }
  *out = hits;
  return n;
}

static void hex_id(uint64_t id, char out[16]) {
  static const char hex[] = "0123456789abcdef";
  for (int k = 0; k < 16; k++)
    out[k] = hex[(id >> (60 - 4 * k)) & 15];
}

/* core.places_near(lat, lon, radius_m, limit) */
static int l_places_near(lua_State *L) {
  places_hit_t stack[PLACES_STACK_LIMIT], *hits;
  int n = lua_query(L, luaL_optinteger(L, 4, 20), stack, &hits);
  if (n < 0) return 2;
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    const places_hit_t *h = &hits[i];
    char id[16];
    hex_id(h->id, id);
    size_t a1 = strlen(h->admin1), a2 = strlen(h->admin2);
    lua_createtable(L, 0, 6 + (a1 > 0) + (a2 > 0));
    set_str(L, K_NAME, h->name, strlen(h->name));
    set_num(L, K_LAT, h->lat_e5 / 1e5);
    set_num(L, K_LON, h->lon_e5 / 1e5);
    set_str(L, K_COUNTRY, h->country, strlen(h->country));
    if (a1) set_str(L, K_ADMIN1, h->admin1, a1);
    if (a2) set_str(L, K_ADMIN2, h->admin2, a2);
    set_str(L, K_ID, id, sizeof id);
    set_num(L, K_DIST, h->distance_m);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* ---- the legacy answer as JSON text ------------------------------------ */

/* Bytes a JSON string escapes, as places/json.lua's writer does (and
 * lua-cjson, but for its "\/"): 0 passes through (UTF-8 included), else
 * the letter of a short escape, or 'u' for \u00XX. */
/* clang-format off */
static const unsigned char json_esc[256] = {
  'u','u','u','u','u','u','u','u','b','t','n','u','f','r','u','u',
  'u','u','u','u','u','u','u','u','u','u','u','u','u','u','u','u',
  0,0,'"',0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,'\\',0,0,0,
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,'u',
};
/* clang-format on */

/* Writes s (NUL-terminated), escaped but without quotes, at p; at most
 * 6 * strlen(s) bytes. Returns the end. */
static char *json_str(char *p, const char *s) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *u = (const unsigned char *)s;
  for (;;) {
    const unsigned char *run = u;
    while (*u && !json_esc[*u])
      u++;
    memcpy(p, run, (size_t)(u - run));
    p += u - run;
    if (!*u) return p;
    unsigned char e = json_esc[*u];
    *p++ = '\\';
    *p++ = (char)e;
    if (e == 'u') {
      memcpy(p, "00", 2);
      p[2] = hex[*u >> 4];
      p[3] = hex[*u & 15];
      p += 4;
    }
    u++;
  }
}

/* Writes v / 1e5 at p as "%.14g" would (what the table path's writers,
 * lua-cjson and places/json.lua, print for the double lat_e5 / 1e5): the
 * decimal digits themselves, trailing zeros dropped, without printf's
 * cost. |v| < 10 would be "1e-05"-style, so printf does those. At most
 * 16 bytes. Returns the end. */
static char *json_e5(char *p, int32_t v) {
  if (v != 0 && v > -10 && v < 10) return p + snprintf(p, 16, "%.14g", v / 1e5);
  uint32_t u = v < 0 ? (uint32_t)(-(int64_t)v) : (uint32_t)v;
  if (v < 0) *p++ = '-';
  uint32_t whole = u / 100000, frac = u % 100000;
  char digits[10];
  int nd = 0;
  do {
    digits[nd++] = (char)('0' + whole % 10);
    whole /= 10;
  } while (whole);
  while (nd)
    *p++ = digits[--nd];
  if (frac) {
    *p++ = '.';
    for (uint32_t d = 10000; frac; d /= 10) {
      *p++ = (char)('0' + frac / d);
      frac %= d;
    }
  }
  return p;
}

#define PLACES_JSON_HIT_FIXED 256 /* keys, punctuation, numbers, the id */

/* Writes the legacy Nearby Search answer for hits[0..n) into b as compact
 * JSON and notes in parts where the "results" array's "[", the last byte of
 * each element and its "]" are (1-based, n + 2 entries). One buffer, sized
 * up front for the worst case (every byte escaped as \u00XX). */
static void json_answer(luaL_Buffer *b, const places_hit_t *hits, int n,
                        const char *status, const char *attribution,
                        size_t *parts) {
  size_t cap = 128 + strlen(status) + 6 * strlen(attribution);
  for (int i = 0; i < n; i++)
    cap += PLACES_JSON_HIT_FIXED +
           6 * (strlen(hits[i].name) + strlen(hits[i].admin1) +
                strlen(hits[i].admin2) + strlen(hits[i].country));
  char *start = luaL_prepbuffsize(b, cap), *p = start;
#define PUT(lit) (memcpy(p, lit, sizeof lit - 1), p += sizeof lit - 1)
  PUT("{\"html_attributions\":[");
  if (*attribution) {
    *p++ = '"';
    p = json_str(p, attribution);
    *p++ = '"';
  }
  PUT("],\"results\":[");
  parts[0] = (size_t)(p - start);
  for (int i = 0; i < n; i++) {
    const places_hit_t *h = &hits[i];
    char id[22] = "local:";
    hex_id(h->id, id + 6);
    if (i) *p++ = ',';
    PUT("{\"geometry\":{\"location\":{\"lat\":");
    p = json_e5(p, h->lat_e5);
    PUT(",\"lng\":");
    p = json_e5(p, h->lon_e5);
    PUT("}},\"name\":\"");
    p = json_str(p, h->name);
    PUT("\",\"place_id\":\"");
    memcpy(p, id, sizeof id);
    p += sizeof id;
    PUT("\",\"reference\":\"");
    memcpy(p, id, sizeof id);
    p += sizeof id;
    PUT("\",\"types\":[\"locality\",\"political\"],\"vicinity\":\"");
    /* admin2, admin1, country: the known ones, joined by ", ". */
    const char *vic[3] = {h->admin2, h->admin1, h->country};
    int any = 0;
    for (int k = 0; k < 3; k++) {
      if (!*vic[k]) continue;
      if (any) PUT(", ");
      p = json_str(p, vic[k]);
      any = 1;
    }
    PUT("\"}");
    parts[i + 1] = (size_t)(p - start);
  }
  *p++ = ']';
  parts[n + 1] = (size_t)(p - start);
  PUT(",\"status\":\"");
  p = json_str(p, status);
  PUT("\"}");
#undef PUT
  luaL_addsize(b, (size_t)(p - start));
}

/* core.places_json(lat, lon, radius_m, limit [, attribution]) -> json,
 * status, parts | nil, err: the query's whole legacy answer as JSON text
 * (the shape scripts/places/local.lua documents), for WHATSAT to cut as
 * text: building and encoding Lua tables cost several times the query.
 * status is "OK" when a place is in range (limit 0 included: one place is
 * looked for), else "ZERO_RESULTS"; parts as herdtext.json_cut gives
 * them. */
static int l_places_json(lua_State *L) {
  lua_Integer limit = luaL_checkinteger(L, 4);
  const char *attribution = luaL_optstring(L, 5, "");
  places_hit_t stack[PLACES_STACK_LIMIT], *hits;
  int n = lua_query(L, limit > 0 ? limit : limit == 0 ? 1 : -1, stack, &hits);
  if (n < 0) return 2;
  const char *status = n > 0 ? "OK" : "ZERO_RESULTS";
  if (limit == 0) n = 0;
  size_t parts_stack[PLACES_STACK_LIMIT + 2], *parts = parts_stack;
  if (n > PLACES_STACK_LIMIT)
    parts = lua_newuserdatauv(L, sizeof *parts * ((size_t)n + 2), 0);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  json_answer(&b, hits, n, status, attribution, parts);
  luaL_pushresult(&b);
  lua_pushstring(L, status);
  lua_createtable(L, n + 2, 0);
  for (int k = 0; k < n + 2; k++) {
    lua_pushinteger(L, (lua_Integer)parts[k]);
    lua_rawseti(L, -2, k + 1);
  }
  return 3;
}

/* core.places_info() -> { path=, count=, source= } | nil, err */
static int l_places_info(lua_State *L) {
  if (!pl.map) {
    lua_pushnil(L);
    lua_pushstring(L, "no places data loaded");
    return 2;
  }
  lua_createtable(L, 0, 3);
  lua_pushstring(L, pl.path);
  lua_setfield(L, -2, "path");
  lua_pushinteger(L, pl.h->count);
  lua_setfield(L, -2, "count");
  lua_pushstring(L, places_source());
  lua_setfield(L, -2, "source");
  return 1;
}

void places_lua_register(lua_State *L) {
  _Static_assert(sizeof lua_keys / sizeof lua_keys[0] == K_COUNT,
                 "one name per key");
  for (int i = 0; i < K_COUNT; i++)
    lua_pushstring(L, lua_keys[i]);
  lua_pushcclosure(L, l_places_near, K_COUNT);
  lua_setfield(L, -2, "places_near");
  lua_pushcfunction(L, l_places_json);
  lua_setfield(L, -2, "places_json");
  lua_pushcfunction(L, l_places_info);
  lua_setfield(L, -2, "places_info");
}
