/** The simulated ServiceNow instance (DESIGN §5). See docs/lab/instance.md. */
export { startInstance } from './instance.js';
export type {
  FaultSpec, InstanceAdmin, InstanceOptions, NewAttachment, NewUser, PublishWord, RunningInstance, SupportsTls, TableAccess,
  TableRecord,
} from './types.js';
