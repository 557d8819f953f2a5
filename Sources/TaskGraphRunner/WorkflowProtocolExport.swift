// The workflow's wire types live in WorkflowProtocol so that the Scheduler, the HTTP service
// and outside tools can use them without the engine and its store; users of the engine get them
// with it.
@_exported import WorkflowProtocol
