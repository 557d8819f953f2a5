// NodeRegistry: being written.
