"""load_handler: each way ASYA_HANDLER can point at a function, or fail to."""

import pytest

from asya_runtime import HandlerLoadError, StartupError, load_handler


def test_package_handler(handler_scenario):
    handler_scenario("package_handler")

    process = load_handler("my_package.handler.process")

    assert process({"text": "is it?"}) == {"label": "question"}


def test_standalone_script_handler(handler_scenario):
    handler_scenario("script_handler")

    predict = load_handler("script.predict")

    assert predict({"features": [1, 2, 3]}) == {"prediction": 3}


def test_missing_module_reports_the_real_import_error_and_pythonpath(handler_scenario, monkeypatch):
    handler_scenario("package_handler")
    monkeypatch.setenv("PYTHONPATH", "/app/models")

    with pytest.raises(HandlerLoadError) as raised:
        load_handler("my_pakage.handler.process")

    message = str(raised.value)
    assert "No module named 'my_pakage'" in message
    assert "ASYA_HANDLER='my_pakage.handler.process'" in message
    assert "PYTHONPATH" in message and "/app/models" in message
    assert isinstance(raised.value, StartupError) and raised.value.exit_code == 3


def test_missing_submodule_of_an_existing_package(handler_scenario):
    handler_scenario("package_handler")

    with pytest.raises(HandlerLoadError) as raised:
        load_handler("my_package.handlers.process")

    assert "No module named 'my_package.handlers'" in str(raised.value)


def test_module_whose_import_raises_keeps_the_error_for_its_traceback(handler_scenario):
    handler_scenario("import_raises")

    with pytest.raises(HandlerLoadError) as raised:
        load_handler("import_raises.process")

    error = raised.value
    assert "import_raises" in str(error)
    assert "RuntimeError: model weights not found at /models/weights.bin" in str(error)
    assert error.show_traceback is True
    assert isinstance(error.__context__, RuntimeError)


def test_syntax_error_names_the_problem_and_keeps_its_traceback(handler_scenario):
    handler_scenario("syntax_error")

    with pytest.raises(HandlerLoadError) as raised:
        load_handler("syntax_error.process")

    error = raised.value
    assert "SyntaxError" in str(error)
    assert error.show_traceback is True
    assert isinstance(error.__context__, SyntaxError)
    assert error.__context__.filename.endswith("syntax_error.py")


def test_missing_dependency_of_the_handler_module_is_not_reported_as_a_missing_handler(handler_scenario):
    handler_scenario("missing_dependency")

    with pytest.raises(HandlerLoadError) as raised:
        load_handler("missing_dependency.process")

    message = str(raised.value)
    assert "No module named 'asya_tests_absent_dependency'" in message
    assert "missing_dependency" in message
    # The module itself was found: the user needs the line that imports the dependency.
    assert raised.value.show_traceback is True


def test_missing_attribute_lists_the_callables_the_module_defines(handler_scenario):
    handler_scenario("missing_attribute")

    with pytest.raises(HandlerLoadError) as raised:
        load_handler("missing_attribute.predcit")

    message = str(raised.value)
    assert "'predcit'" in message
    assert "callables it defines: Model, predict, train" in message
    assert "dumps" not in message, "imported functions are not the module's own"
    assert "_normalise" not in message
    assert "missing_attribute.py" in message


def test_non_callable_attribute_says_what_it_is(handler_scenario):
    handler_scenario("not_callable")

    with pytest.raises(HandlerLoadError) as raised:
        load_handler("not_callable.process")

    message = str(raised.value)
    assert "'process'" in message
    assert "dict" in message and "not callable" in message
    assert "ASYA_HANDLER" in message
