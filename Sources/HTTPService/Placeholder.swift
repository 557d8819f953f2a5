// HTTPService: being written.
