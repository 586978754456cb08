# herd: build, run, test. `make help` lists the targets.
PREFIX  ?= /usr/local
DESTDIR ?=
PKGS    := lua5.4 libuv libcurl openssl lmdb
CC      ?= cc

# SANITIZE=1 builds an AddressSanitizer + UndefinedBehaviorSanitizer binary
# into build/san/ and runs the tests against it.
ifeq ($(SANITIZE),1)
  OUT      := build/san
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  OPT      := -O1 -g
else
  OUT      := build
  SANFLAGS :=
  OPT      := -O2 -g
endif

SCRIPT_DIR ?= $(CURDIR)/scripts
DATA_DIR   ?= $(CURDIR)/data
VERSION    := $(shell git describe --always --dirty 2>/dev/null || echo dev)
WARN       := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter -Werror=implicit-function-declaration
CFLAGS     += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(SANFLAGS) \
              -DHERD_VERSION='"$(VERSION)"' -DHERD_SCRIPT_DIR='"$(SCRIPT_DIR)"' \
              -DHERD_DATA_DIR='"$(DATA_DIR)"'
PKG_CFLAGS  = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS    = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

SRC := $(wildcard core/*.c)
OBJ := $(SRC:core/%.c=$(OUT)/obj/%.o)
BIN := $(OUT)/herd

.PHONY: all deps run test test-chaos test-state test-tree bench fuzz clean install help places-data format

all: $(BIN) $(OUT)/herdtext.so $(OUT)/peer_tls $(OUT)/tls_client $(OUT)/failrand.so

# A test shim (LD_PRELOAD) whose RAND_bytes fails; no sanitizer inside.
$(OUT)/failrand.so: tests/tools/failrand.c | $(OUT)/obj
	@echo "CC $@"
	@$(CC) -O1 $(WARN) -fPIC -shared $< -o $@

# The test tool that speaks TLS to a peer port as a neighbour would.
$(OUT)/peer_tls: tests/tools/peer_tls.c | $(OUT)/obj
	@echo "CC $@"
	@$(CC) -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) $(PKG_CFLAGS) $< -o $@ $(PKG_LIBS)

# The test tool that is a client of a tls_port (specs relay through it).
$(OUT)/tls_client: tests/tools/tls_client.c | $(OUT)/obj
	@echo "CC $@"
	@$(CC) -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) $(PKG_CFLAGS) $< -o $@ $(PKG_LIBS)

# The text primitives as a Lua C module too, so unit tests run the same code.
# records.c without its accept rule (which needs the store and the links).
HERDTEXT_SRC := core/herdtext.c core/textlib.c core/records.c core/json.c
$(OUT)/herdtext.so: $(HERDTEXT_SRC) $(HERDTEXT_SRC:.c=.h) | $(OUT)/obj
	@echo "CC $@"
	@$(CC) $(CFLAGS) $(PKG_CFLAGS) -DRECORDS_FORMAT_ONLY -fPIC -shared $(HERDTEXT_SRC) -o $@

$(OUT)/obj/%.o: core/%.c $(wildcard core/*.h) | $(OUT)/obj
	@echo "CC $<"
	@$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BIN): $(OBJ)
	@echo "LD $@"
	@$(CC) $(CFLAGS) $(OBJ) -o $@ $(PKG_LIBS) -lm $(LDFLAGS)

$(OUT)/obj:
	@mkdir -p $@

help:
	@echo "make            build build/herd"
	@echo "make deps       install the Debian packages herd needs (as root)"
	@echo "make run        build, then run the five-server example herd"
	@echo "make test       run every test suite (SANITIZE=1: under ASan/UBSan)"
	@echo "make test-chaos hostile-input, crash and partition tests"
	@echo "make test-state crash, partition and flapping tests with state_dir on"
	@echo "make test-tree  the herd, crash and partition tests with dissemination = tree"
	@echo "make bench      benchmark herd against its baselines"
	@echo "make fuzz       build the libFuzzer targets, fuzz each for FUZZ_SECONDS (60)"
	@echo "make install    install into \$$DESTDIR\$$PREFIX"

# deps.sh exits at once when everything is present.
deps:
	@tools/deps.sh

places-data:
	@tools/places-data.sh

run: deps
	@$(MAKE) --no-print-directory all
	@tools/places-data.sh || true
	@tools/run-herd.sh examples/cs131/herd.lua

test: deps
	@$(MAKE) --no-print-directory all
	@HERD_BIN=$(CURDIR)/$(BIN) tools/test.sh

# The crash, partition and flapping tests with state on disk (state_sync
# "always"): a restarted server loads what it had.
test-state: deps
	@$(MAKE) --no-print-directory all
	@HERD_BIN=$(CURDIR)/$(BIN) HERD_TEST_STATE_SYNC=always tools/test.sh state

test-chaos: deps
	@$(MAKE) --no-print-directory all
	@HERD_BIN=$(CURDIR)/$(BIN) tools/test.sh chaos
	@HERD_BIN=$(CURDIR)/$(BIN) HERD_TEST_STATE_SYNC=always tools/test.sh state
	@HERD_BIN=$(CURDIR)/$(BIN) HERD_TEST_DISSEMINATION=tree tools/test.sh tree

# The herd, crash and partition tests under dissemination = "tree".
test-tree: deps
	@$(MAKE) --no-print-directory all
	@HERD_BIN=$(CURDIR)/$(BIN) HERD_TEST_DISSEMINATION=tree tools/test.sh tree

bench: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory -C tests/bench
	@tests/bench/run.sh

FUZZ_SECONDS ?= 60
fuzz: deps
	@$(MAKE) --no-print-directory -C tests/fuzz
	@for t in lines peer; do d=$$(mktemp -d); cp tests/fuzz/corpus/$$t/* $$d/; \
	  build/fuzz/fuzz_$$t -close_fd_mask=2 -max_total_time=$(FUZZ_SECONDS) $$d || exit 1; rm -rf $$d; done

format:
	clang-format -i core/*.c core/*.h

# An installed binary is built apart, with PREFIX's script and data
# directories compiled in, never with sanitizers (SANITIZE=0 overrides a
# SANITIZE=1 inherited from `make test SANITIZE=1`).
install:
	rm -rf build/install
	@$(MAKE) --no-print-directory OUT=build/install SANITIZE=0 \
	  SCRIPT_DIR=$(PREFIX)/share/herd/scripts DATA_DIR=$(PREFIX)/share/herd/data \
	  build/install/herd build/install/herdtext.so
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/herd/data \
	  $(DESTDIR)$(PREFIX)/share/lua/5.4/herd $(DESTDIR)$(PREFIX)/lib/lua/5.4
	install -m 755 build/install/herd $(DESTDIR)$(PREFIX)/bin/herd
	install -m 644 build/install/herdtext.so $(DESTDIR)$(PREFIX)/lib/lua/5.4/herdtext.so
	# The test kit, as require "herd.testing", starting the installed binary.
	grep -q '^M.bin = os.getenv("HERD_BIN") or "build/herd"$$' tests/helpers/herd.lua
	sed 's|^M.bin = os.getenv("HERD_BIN") or "build/herd"$$|M.bin = os.getenv("HERD_BIN") or "$(PREFIX)/bin/herd"|' \
	  tests/helpers/herd.lua > $(DESTDIR)$(PREFIX)/share/lua/5.4/herd/testing.lua
	rm -rf $(DESTDIR)$(PREFIX)/share/herd/scripts
	cp -R scripts $(DESTDIR)$(PREFIX)/share/herd/scripts
	install -m 644 data/places-sample.bin $(DESTDIR)$(PREFIX)/share/herd/data/
	if [ -f data/places.bin ]; then install -m 644 data/places.bin $(DESTDIR)$(PREFIX)/share/herd/data/; fi

clean:
	rm -rf build
