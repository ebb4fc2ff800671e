"""A handler that lives in a package, named my_package.handler.process."""
