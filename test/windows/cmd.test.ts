/**
 * How the agent runs manage-certificates.bat on Windows (agent/windows/cmd.ts): cmd.exe /d /s /c
 * with a line built here, never a shell string of untrusted input. Real cmd.exe semantics for `%`
 * can only be proven on Windows (wine's cmd expands recursively): docs/windows.md.
 */
import assert from 'node:assert/strict';
import { BATCH_ARG_ENV, batchInvocation, cmdExePath, cmdLine, isBatchFile, quoteCmdArg, scriptForLine } from '../../agent/windows/cmd.js';
import { isMidcertError } from '../../common/errors.js';

describe('windows/cmd: batch file invocation', () => {
  it('runs %SystemRoot%\\System32\\cmd.exe /d /s /c with one outer pair of quotes', () => {
    const inv = batchInvocation('C:\\MID\\agent\\bin\\scripts\\manage-certificates.bat', ['-a', 'defaultsecuritykeypairhandle', 'C:\\state\\b.pem'], { SystemRoot: 'C:\\Windows' });
    assert.equal(inv.file, 'C:\\Windows\\System32\\cmd.exe');
    assert.deepEqual(inv.args, ['/d', '/s', '/c', '"C:\\MID\\agent\\bin\\scripts\\manage-certificates.bat -a defaultsecuritykeypairhandle C:\\state\\b.pem"']);
  });

  it('leaves flags and plain values unquoted (a batch file compares %1 with -a textually)', () => {
    for (const a of ['-a', '-m', '-b', 'defaultsecuritykeypairhandle', 'C:\\x\\y.pem', 'user@example.com']) assert.equal(quoteCmdArg(a), a);
  });

  it('quotes paths with spaces, &, ^, |, <, >, (, ), ;, ,, = and !', () => {
    assert.equal(quoteCmdArg('C:\\ServiceNow\\MID Server\\agent'), '"C:\\ServiceNow\\MID Server\\agent"');
    assert.equal(quoteCmdArg('C:\\a&b^c\\x.pem'), '"C:\\a&b^c\\x.pem"');
    for (const ch of ['&', '^', '|', '<', '>', '(', ')', ';', ',', '=', '!', ' ']) {
      assert.equal(quoteCmdArg(`a${ch}b`), `"a${ch}b"`, ch);
    }
    assert.equal(quoteCmdArg(''), '""');
  });

  it('passes an argument holding % through an environment variable, never on the line', () => {
    const inv = batchInvocation('C:\\s.bat', ['-b', 'admin', 'p%PATH%w&^'], { SystemRoot: 'C:\\Windows', MIDCERT_BATCH_ARG_9: 'stale' });
    assert.equal(inv.args[3], '"C:\\s.bat -b admin "%MIDCERT_BATCH_ARG_3%""');
    assert.equal(inv.env.MIDCERT_BATCH_ARG_3, 'p%PATH%w&^');
    assert.ok(!inv.args.join(' ').includes('p%PATH%w'));
    assert.equal(inv.env.MIDCERT_BATCH_ARG_9, undefined, 'stale values are not inherited');
    assert.ok(BATCH_ARG_ENV.length > 0);
    const env: Record<string, string> = {};
    assert.equal(cmdLine('C:\\100%\\s.bat', ['x'], env), '""%MIDCERT_BATCH_ARG_0%" x"');
    assert.equal(env.MIDCERT_BATCH_ARG_0, 'C:\\100%\\s.bat');
  });

  it('refuses double quotes and control characters (USAGE), without echoing them', () => {
    for (const bad of ['pa"ss', 'a\nb', 'a\rb', 'a\u0000b', 'a\u001bb']) {
      assert.throws(() => quoteCmdArg(bad), (err: unknown) => isMidcertError(err) && err.code === 'USAGE' && !err.message.includes(bad));
    }
  });

  it('puts a script inside the working directory on the line relative to it', () => {
    assert.equal(scriptForLine('C:\\MID & Co%1\\agent\\bin\\scripts\\manage-certificates.bat', 'C:\\MID & Co%1\\agent'), '.\\bin\\scripts\\manage-certificates.bat');
    assert.equal(scriptForLine('D:\\other\\m.bat', 'C:\\MID\\agent'), 'D:\\other\\m.bat');
    assert.equal(scriptForLine('C:\\MID\\m.bat', undefined), 'C:\\MID\\m.bat');
  });

  it('knows batch files and finds cmd.exe without PATH', () => {
    assert.ok(isBatchFile('x\\manage-certificates.bat') && isBatchFile('X.CMD') && !isBatchFile('manage-certificates.sh'));
    assert.equal(cmdExePath({}), 'C:\\Windows\\System32\\cmd.exe');
    assert.equal(cmdExePath({ SystemRoot: 'D:\\WINNT' }), 'D:\\WINNT\\System32\\cmd.exe');
  });
});
