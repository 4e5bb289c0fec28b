# kaizen - one Makefile for everything (see README.md)
#
#   make                      build every executable into bin/
#   make check                unit and integration tests (tests/run)
#   make SANITIZE=address,undefined check
#                             the same with sanitizers (objects in build/san)
#   make bench                benchmarks (bench/run)
#   make chaos [CHAOS_MINUTES=5] [CHAOS_SEED=1] [CHAOS_SETTLE=300]
#                             the chaos suite (tests/chaos/run, docs/chaos.md)
#   make fuzz [FUZZ_TIME=60]  every libFuzzer target for FUZZ_TIME seconds
#   make lint                 clang-format --dry-run and cppcheck
#   make install PREFIX=/usr/local

CC       ?= cc
PREFIX   ?= /usr/local
FUZZ_TIME ?= 60
PKGS     := libzmq libczmq msgpack yaml-0.1 jansson libpq libxml-2.0 libpcre2-8
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))

WARN := -Wall -Wextra -Wstrict-prototypes -Wwrite-strings -Wvla -Wformat=2 \
        -Wshadow -Wpointer-arith -Wmissing-prototypes -Wold-style-definition \
        -Wnull-dereference -Wundef -Werror
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -Ilib -Iproto $(PKG_CFLAGS)
LDLIBS := $(PKG_LIBS) -lpthread -lm

ifneq ($(SANITIZE),)
  B   := build/san
  BIN := build/san/bin
  ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
  LDFLAGS += -fsanitize=$(SANITIZE)
else
  B   := build/default
  BIN := bin
endif

LIB_SRC  := $(wildcard lib/*.c) $(wildcard proto/*.c)
# the schema migrations, compiled in (lib/kz_db.h: kz_migrations)
MIGRATIONS := $(sort $(wildcard db/migrations/*.sql))
# the built-in tool and fixer recipes, compiled in (lib/kz_config.h: kz_catalog)
CATALOG  := $(sort $(wildcard catalog/*.yaml))
GEN_SRC  := $(B)/gen/kz_migrations.c $(B)/gen/kz_catalog.c
LIB_OBJ  := $(patsubst %.c,$(B)/obj/%.o,$(LIB_SRC)) $(B)/obj/gen/kz_migrations.o \
            $(B)/obj/gen/kz_catalog.o
LIBA     := $(B)/libkaizen.a

BROKER_SRC := $(wildcard broker/*.c)
CLI_SRC    := $(wildcard cli/*.c)
ORCH_SRC   := $(wildcard orchestrator/*.c)
AGENT_SRC  := $(wildcard agents/*/*.c)
AGENT_BIN  := $(foreach f,$(AGENT_SRC),$(BIN)/kaizen-$(subst _,-,$(basename $(notdir $(f)))))

PROGS := $(BIN)/kaizen-broker $(BIN)/kaizen $(AGENT_BIN)
ifneq ($(ORCH_SRC),)
  PROGS += $(BIN)/kaizen-orchestrator
endif

UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(UNIT_SRC))
TOOL_SRC  := $(wildcard tests/tools/*.c)
TOOL_BIN  := $(patsubst tests/tools/%.c,$(B)/tests/tools/%,$(TOOL_SRC))
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRC))
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN  := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))

.PHONY: all check tests bench chaos fuzz fuzz-build lint install clean
# keep objects of tests, tools and benchmarks between runs
.SECONDARY:
.DEFAULT_GOAL := all

all: $(PROGS)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(B)/gen/kz_migrations.c: $(MIGRATIONS) scripts/embed-sql
	@mkdir -p $(dir $@)
	sh scripts/embed-sql $@ $(MIGRATIONS)

$(B)/gen/kz_catalog.c: $(CATALOG) scripts/embed-catalog
	@mkdir -p $(dir $@)
	sh scripts/embed-catalog $@ $(CATALOG)

$(B)/obj/gen/%.o: $(B)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(LIBA): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN)/kaizen-broker: $(patsubst %.c,$(B)/obj/%.o,$(BROKER_SRC)) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/kaizen: $(patsubst %.c,$(B)/obj/%.o,$(CLI_SRC)) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/kaizen-orchestrator: $(patsubst %.c,$(B)/obj/%.o,$(ORCH_SRC)) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# agents/<layer>/<name>.c builds kaizen-<name> (underscores become dashes)
define AGENT_RULE
$(BIN)/kaizen-$(subst _,-,$(basename $(notdir $(1)))): $(B)/obj/$(basename $(1)).o $(LIBA)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach f,$(AGENT_SRC),$(eval $(call AGENT_RULE,$(f))))

$(B)/tests/unit/%: $(B)/obj/tests/unit/%.o $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(B)/tests/tools/%: $(B)/obj/tests/tools/%.o $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/bench/%: $(B)/obj/bench/%.o $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

tests: $(PROGS) $(UNIT_BIN) $(TOOL_BIN)

# the sanitizer pass says so (KZ_SANITIZE=1): tests/run skips the scripts
# marked "# kz-plain-only" there
check: tests
	KZ_BIN=$(BIN) KZ_BUILD=$(B) KZ_SANITIZE=$(if $(SANITIZE),1,) tests/run

bench: $(PROGS) $(BENCH_BIN) $(TOOL_BIN)
	KZ_BIN=$(BIN) KZ_BUILD=$(B) bench/run

# kill -9 under load, then the invariants (docs/chaos.md); CI: 5 minutes, seed 1
CHAOS_MINUTES ?= 5
CHAOS_SEED ?= 1
CHAOS_SETTLE ?= 300
chaos: $(PROGS) $(TOOL_BIN)
	KZ_BIN=$(BIN) KZ_BUILD=$(B) tests/chaos/run --minutes $(CHAOS_MINUTES) --seed $(CHAOS_SEED) \
	  --settle $(CHAOS_SETTLE)

# libFuzzer targets: clang, each linked with the runtime sources it fuzzes
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -Ilib -Iproto $(PKG_CFLAGS) \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
build/fuzz/%: tests/fuzz/%.c $(wildcard tests/fuzz/*.h) $(LIB_SRC) $(wildcard lib/*.h proto/*.h) build/fuzz/gen/kz_migrations.c build/fuzz/gen/kz_catalog.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRC) build/fuzz/gen/kz_migrations.c build/fuzz/gen/kz_catalog.c $(LDLIBS)

build/fuzz/gen/kz_migrations.c: $(MIGRATIONS) scripts/embed-sql
	@mkdir -p $(dir $@)
	sh scripts/embed-sql $@ $(MIGRATIONS)

build/fuzz/gen/kz_catalog.c: $(CATALOG) scripts/embed-catalog
	@mkdir -p $(dir $@)
	sh scripts/embed-catalog $@ $(CATALOG)

fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	@set -e; for f in $(FUZZ_BIN); do \
	  name=$$(basename $$f); corpus=tests/fuzz/corpus/$${name#fuzz_}; \
	  work=build/fuzz/work-$$name; mkdir -p $$work; \
	  echo "fuzz $$name for $(FUZZ_TIME)s (seed corpus $$corpus)"; \
	  $$f -max_total_time=$(FUZZ_TIME) -print_final_stats=1 -rss_limit_mb=2048 \
	      $$work $$corpus 2>build/fuzz/$$name.log || { tail -50 build/fuzz/$$name.log; exit 1; }; \
	  grep -E 'stat::number_of_executed_units|Done' build/fuzz/$$name.log | tail -2; \
	done

# the samples and recorded tool inputs carry planted problems on purpose
LINT_FILES := $(shell git ls-files '*.c' '*.h' ':!:examples/*' ':!:tests/data/*' 2>/dev/null)
lint:
	clang-format --dry-run --Werror $(LINT_FILES)
	cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem -D__GNUC__ -Ilib -Iproto $(LINT_FILES)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/kaizen $(DESTDIR)$(PREFIX)/share/doc/kaizen
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)$(PREFIX)/lib/kaizen $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 755 deploy/systemd/kaizen-agent-run $(DESTDIR)$(PREFIX)/lib/kaizen/
	install -m 644 deploy/systemd/*.service $(DESTDIR)$(PREFIX)/lib/systemd/system/
	install -m 644 examples/kaizen.yaml $(DESTDIR)$(PREFIX)/share/kaizen/kaizen.yaml.example
	install -m 644 README.md proto/PROTOCOL.md $(wildcard docs/*.md) $(DESTDIR)$(PREFIX)/share/doc/kaizen/

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
