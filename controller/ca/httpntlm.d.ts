/** The message functions of httpntlm's ntlm.js (the package ships no types). */
declare module 'httpntlm/ntlm.js' {
  export interface Type2Message {
    negotiateFlags: number;
    serverChallenge: Buffer;
    targetInfo?: Buffer;
  }
  export interface NtlmCredentials {
    username: string;
    password: string;
    domain: string;
    workstation: string;
  }
  export function createType1Message(options: { domain: string; workstation: string }): string;
  export function parseType2Message(header: string, onError: (err: Error) => void): Type2Message | null;
  export function createType3Message(type2: Type2Message, options: NtlmCredentials): string;
}
