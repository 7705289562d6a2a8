//! JSON-CRDT: replicated job and workflow state. Pure data structure: no I/O, no async, no hidden clock.
