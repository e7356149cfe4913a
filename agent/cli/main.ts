#!/usr/bin/env node
import { runProgram } from '../../common/cli.js';
import { agentProgram } from './program.js';

export { agentProgram };

process.exitCode = await runProgram(agentProgram(), process.argv);
