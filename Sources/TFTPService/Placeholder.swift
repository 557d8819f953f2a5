// TFTPService: being written.
