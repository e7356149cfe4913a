# midcert — see README.md. Every target installs what it needs first.
SHELL := /bin/bash
NODE_MODULES := node_modules/.package-lock.json

.PHONY: all install build test typecheck demo bench clean proto

all: build

$(NODE_MODULES): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: $(NODE_MODULES)

build: $(NODE_MODULES)
	npx tsc -p tsconfig.json
	@touch dist/.build-stamp

typecheck: $(NODE_MODULES)
	npx tsc -p tsconfig.json --noEmit

# Runs the whole suite over the TypeScript sources (mocha + tsx); no build step needed.
test: $(NODE_MODULES)
	npx tsc -p tsconfig.json --noEmit
	npx mocha

demo: build
	node dist/scripts/demo.js

bench: $(NODE_MODULES)
	npx tsx bench/run.ts

clean:
	rm -rf dist

# Regenerates proto/gen from proto/midcert/v1/*.proto (buf + protoc-gen-es, both from npm).
proto: $(NODE_MODULES)
	cd proto && rm -rf gen && npx buf lint && npx buf generate
