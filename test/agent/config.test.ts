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
