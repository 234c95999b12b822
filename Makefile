.PHONY: run demo test bench

run:
	./scripts/run.sh

demo:
	./scripts/demo.sh

test:
	./scripts/test.sh

bench:
	cargo bench --bench store
