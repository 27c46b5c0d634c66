#!/usr/bin/env node
// Entry point for the `attest` command: registers the TypeScript loader, then runs the CLI.
import { register } from 'tsx/esm/api';
register();
await import('../services/cli/src/main.ts');
