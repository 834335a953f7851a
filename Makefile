# Shortcuts; the scripts work without make.
.PHONY: demo test bench soak fleet bench-fleet bench-peers
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
bench:
	bash scripts/setup.sh && .venv/bin/python -m bench
soak:
	bash scripts/setup.sh && .venv/bin/python -m bench.soak
fleet:
	bash scripts/fleet.sh
bench-fleet:
	bash scripts/setup.sh && .venv/bin/python -m bench --fleet
bench-peers:
	GF_PEERS=1 bash scripts/setup.sh && .venv/bin/python -m bench --peers
