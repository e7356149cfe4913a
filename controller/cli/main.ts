#!/usr/bin/env node
import { runProgram } from '../../common/cli.js';
import { controllerProgram } from './program.js';

export { controllerProgram };

process.exitCode = await runProgram(controllerProgram(), process.argv);
