.PHONY: run demo test release bench bench-store

run:
	./scripts/run.sh

demo:
	./scripts/demo.sh

test:
	./scripts/test.sh

# The production binary, its SBOM and SHA-256 sums in dist/, after cargo deny's licence, ban and source checks.
release:
	./scripts/release.sh

# The whole-gateway load benchmark of issue 8 (under 10 minutes once built): writes benches/results/latest.md.
bench:
	./benches/load.sh

# The criterion benches of the store (memory; Redis with IBGW_BENCH_REDIS_URL).
bench-store:
	cargo bench --bench store
