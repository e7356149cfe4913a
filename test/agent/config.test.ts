import assert from 'node:assert/strict';
import { MidcertError } from '../../common/errors.js';
import { parseAgentConfig } from '../../agent/config.js';
import { parseControllerConfig } from '../../controller/config.js';

const invalid = (key: RegExp) => (e: unknown): boolean => e instanceof MidcertError && e.code === 'CONFIG_INVALID' && key.test(e.message);

describe('agent and controller config files', () => {
  const minimal = 'mid:\n  home: mid\nservice:\n  manager: systemd\n  unit: mid\n';

  it('fills documented defaults and resolves relative paths against the file', () => {
    const cfg = parseAgentConfig(`${minimal}stateDir: state\n`, '/etc/midcert/agent.yaml');
    assert.equal(cfg.mid.home, '/etc/midcert/mid');
    assert.equal(cfg.stateDir, '/etc/midcert/state');
    assert.equal(cfg.mid.alias, 'defaultsecuritykeypairhandle');
    assert.equal(cfg.verify.settleSeconds, 5);
    assert.equal(cfg.subject.keyType, 'rsa');
    assert.equal(cfg.backups.keep, 5);
  });

  it('install.allowKeyTypes and mid.requireImportSuccessLine: documented defaults and labels (docs/agent-config.md)', () => {
    const cfg = parseAgentConfig(`${minimal}stateDir: state\n`, '/etc/midcert/agent.yaml');
    assert.deepEqual(cfg.install.allowKeyTypes, []);
    assert.equal(cfg.mid.requireImportSuccessLine, true);
    assert.deepEqual(parseAgentConfig(`${minimal}install:\n  allowKeyTypes: [rsa-3072, ec-p256]\n`, 'agent.yaml').install.allowKeyTypes, ['rsa-3072', 'ec-p256']);
    assert.throws(() => parseAgentConfig(`${minimal}install:\n  allowKeyTypes: [EC]\n`, 'agent.yaml'), invalid(/install\.allowKeyTypes/));
  });

  // docs/vendor-facts.md §14: agent/security_backup/ is the MID's own (pruned to mid.keystore.max_backups).
  it("refuses a stateDir inside the MID's agent/ tree (e.g. agent/security_backup), where the MID keeps its own backups", () => {
    assert.throws(() => parseAgentConfig(`${minimal}stateDir: mid/agent/security_backup\n`, '/etc/midcert/agent.yaml'), invalid(/stateDir .*security_backup is inside the MID's/));
    assert.throws(() => parseAgentConfig(`${minimal}stateDir: mid/agent\n`, '/etc/midcert/agent.yaml'), invalid(/inside the MID's/));
    assert.equal(parseAgentConfig(`${minimal}stateDir: mid-state\n`, '/etc/midcert/agent.yaml').stateDir, '/etc/midcert/mid-state');
  });

  it('names the key at fault', () => {
    assert.throws(() => parseAgentConfig('mid:\n  home: x\nservice:\n  manager: command\n', 'agent.yaml'), invalid(/agent\.yaml: service\.start: required/));
    assert.throws(() => parseAgentConfig(`${minimal}servcie: {}\n`, 'agent.yaml'), invalid(/servcie|Unrecognized/));
    assert.throws(() => parseAgentConfig('mid:\n  home: x\nservice:\n  manager: upstart\n', 'agent.yaml'), invalid(/service\.manager/));
    assert.throws(() => parseAgentConfig(`${minimal}mid2: [`, 'agent.yaml'), invalid(/not valid YAML/));
    assert.throws(() => parseControllerConfig('ca:\n  type: local\ninstance:\n  url: not a url\n', 'controller.yaml'), invalid(/instance\.url/));
  });

  it('refuses a YAML alias bomb', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 9 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(', ')}]`)].join('\n');
    assert.throws(() => parseAgentConfig(bomb, 'agent.yaml'), (e: unknown) => e instanceof MidcertError && e.code === 'CONFIG_INVALID');
  });
});
