"""load_config: every variable, its default, and what a bad value tells the user."""

import pytest

from asya_runtime import StartupError, load_config

HANDLER = {"ASYA_HANDLER": "my_package.handler.process"}


def config_from(**variables):
    environ = dict(HANDLER)
    environ.update(variables)
    return load_config(environ)


def test_defaults_when_only_the_handler_is_set():
    config = load_config(dict(HANDLER))

    assert config.handler == "my_package.handler.process"
    assert config.socket_dir == "/var/run/asya"
    assert config.handler_mode == "payload"
    assert config.include_metadata is False
    assert config.chunk_size == 4096
    assert config.enable_validation is True
    assert config.max_message_size == 128 * 1024 * 1024  # documented default; at least 64 MiB
    assert config.io_timeout == 30.0
    assert config.log_level == "INFO"


def test_every_variable_is_read():
    config = load_config(
        {
            "ASYA_HANDLER": "script.predict",
            "ASYA_SOCKET_DIR": "/tmp/asya-sockets",
            "ASYA_HANDLER_MODE": "envelope",
            "ASYA_INCLUDE_METADATA": "true",
            "ASYA_CHUNK_SIZE": "1048576",
            "ASYA_ENABLE_VALIDATION": "false",
            "ASYA_MAX_MESSAGE_SIZE": "1024",
            "ASYA_IO_TIMEOUT": "2.5",
            "ASYA_LOG_LEVEL": "DEBUG",
        }
    )

    assert config.handler == "script.predict"
    assert config.socket_dir == "/tmp/asya-sockets"
    assert config.handler_mode == "envelope"
    assert config.include_metadata is True
    assert config.chunk_size == 1048576
    assert config.enable_validation is False
    assert config.max_message_size == 1024
    assert config.io_timeout == 2.5
    assert config.log_level == "DEBUG"


def test_config_cannot_be_changed_after_loading():
    config = load_config(dict(HANDLER))
    with pytest.raises(AttributeError):
        config.handler_mode = "envelope"


def test_empty_socket_dir_means_the_default():
    assert config_from(ASYA_SOCKET_DIR="").socket_dir == "/var/run/asya"


def test_io_timeout_zero_means_wait_forever():
    assert config_from(ASYA_IO_TIMEOUT="0").io_timeout == 0


def test_log_level_in_any_case():
    assert config_from(ASYA_LOG_LEVEL="warning").log_level == "WARNING"


def _every_case_of(words):
    spellings = []
    for word in words:
        for variant in (
            word.lower(),
            word.upper(),
            word.capitalize(),
            word.swapcase().capitalize().swapcase(),
        ):
            if variant not in spellings:
                spellings.append(variant)
    return spellings


TRUE_SPELLINGS = _every_case_of(["true", "1", "yes"]) + ["tRuE", "yEs"]
FALSE_SPELLINGS = _every_case_of(["false", "0", "no"]) + ["fAlSe", "nO"]
BOOLEAN_VARIABLES = [
    ("ASYA_INCLUDE_METADATA", "include_metadata"),
    ("ASYA_ENABLE_VALIDATION", "enable_validation"),
]


@pytest.mark.parametrize("variable, field", BOOLEAN_VARIABLES)
@pytest.mark.parametrize("spelling", TRUE_SPELLINGS)
def test_boolean_true_spellings(variable, field, spelling):
    assert getattr(config_from(**{variable: spelling}), field) is True


@pytest.mark.parametrize("variable, field", BOOLEAN_VARIABLES)
@pytest.mark.parametrize("spelling", FALSE_SPELLINGS)
def test_boolean_false_spellings(variable, field, spelling):
    assert getattr(config_from(**{variable: spelling}), field) is False


@pytest.mark.parametrize("mode", ["payload", "envelope"])
def test_both_handler_modes_are_accepted(mode):
    assert config_from(ASYA_HANDLER_MODE=mode).handler_mode == mode


@pytest.mark.parametrize(
    "handler", ["module.function", "a.b.c.d", "_private.handler", "script.predict", "pkg2.mod_3.fn_4"]
)
def test_well_formed_handlers_are_accepted(handler):
    assert load_config({"ASYA_HANDLER": handler}).handler == handler


# (variables, the variable the message must name, a hint the message must carry)
BAD_CONFIGURATIONS = [
    ({"ASYA_HANDLER": None}, "ASYA_HANDLER", "module.function"),
    ({"ASYA_HANDLER": ""}, "ASYA_HANDLER", "module.function"),
    ({"ASYA_HANDLER": "   "}, "ASYA_HANDLER", "module.function"),
    ({"ASYA_HANDLER": "process"}, "ASYA_HANDLER", "module.function"),
    ({"ASYA_HANDLER": "my-module.process"}, "ASYA_HANDLER", "module.function"),
    ({"ASYA_HANDLER": "pkg..process"}, "ASYA_HANDLER", "module.function"),
    ({"ASYA_HANDLER": ".process"}, "ASYA_HANDLER", "module.function"),
    ({"ASYA_HANDLER": "module."}, "ASYA_HANDLER", "module.function"),
    ({"ASYA_HANDLER": "1module.process"}, "ASYA_HANDLER", "module.function"),
    ({"ASYA_HANDLER": "module.process()"}, "ASYA_HANDLER", "module.function"),
    ({"ASYA_HANDLER": "/app/script.py"}, "ASYA_HANDLER", "PYTHONPATH"),
    ({"ASYA_HANDLER_MODE": "batch"}, "ASYA_HANDLER_MODE", "'payload' or 'envelope'"),
    ({"ASYA_HANDLER_MODE": ""}, "ASYA_HANDLER_MODE", "'payload' or 'envelope'"),
    ({"ASYA_HANDLER_MODE": "payloads"}, "ASYA_HANDLER_MODE", "'payload' or 'envelope'"),
    ({"ASYA_INCLUDE_METADATA": "maybe"}, "ASYA_INCLUDE_METADATA", "true/1/yes or false/0/no"),
    ({"ASYA_INCLUDE_METADATA": ""}, "ASYA_INCLUDE_METADATA", "true/1/yes or false/0/no"),
    ({"ASYA_INCLUDE_METADATA": "on"}, "ASYA_INCLUDE_METADATA", "true/1/yes or false/0/no"),
    ({"ASYA_ENABLE_VALIDATION": "2"}, "ASYA_ENABLE_VALIDATION", "true/1/yes or false/0/no"),
    ({"ASYA_ENABLE_VALIDATION": "off"}, "ASYA_ENABLE_VALIDATION", "true/1/yes or false/0/no"),
    ({"ASYA_ENABLE_VALIDATION": "y"}, "ASYA_ENABLE_VALIDATION", "true/1/yes or false/0/no"),
    ({"ASYA_CHUNK_SIZE": "0"}, "ASYA_CHUNK_SIZE", "positive integer"),
    ({"ASYA_CHUNK_SIZE": "-4096"}, "ASYA_CHUNK_SIZE", "positive integer"),
    ({"ASYA_CHUNK_SIZE": "4k"}, "ASYA_CHUNK_SIZE", "positive integer"),
    ({"ASYA_CHUNK_SIZE": "1.5"}, "ASYA_CHUNK_SIZE", "positive integer"),
    ({"ASYA_CHUNK_SIZE": ""}, "ASYA_CHUNK_SIZE", "positive integer"),
    ({"ASYA_MAX_MESSAGE_SIZE": "0"}, "ASYA_MAX_MESSAGE_SIZE", "positive integer"),
    ({"ASYA_MAX_MESSAGE_SIZE": "big"}, "ASYA_MAX_MESSAGE_SIZE", "positive integer"),
    ({"ASYA_IO_TIMEOUT": "-1"}, "ASYA_IO_TIMEOUT", "seconds"),
    ({"ASYA_IO_TIMEOUT": "soon"}, "ASYA_IO_TIMEOUT", "seconds"),
    ({"ASYA_IO_TIMEOUT": "nan"}, "ASYA_IO_TIMEOUT", "seconds"),
    ({"ASYA_IO_TIMEOUT": "inf"}, "ASYA_IO_TIMEOUT", "seconds"),
    ({"ASYA_LOG_LEVEL": "LOUD"}, "ASYA_LOG_LEVEL", "DEBUG"),
    ({"ASYA_LOG_LEVEL": ""}, "ASYA_LOG_LEVEL", "DEBUG"),
    ({"ASYA_SOCKET_DIR": "/tmp/" + "d" * 100}, "ASYA_SOCKET_DIR", "shorter directory"),
]


def _bad_config_id(case):
    variables, _, _ = case
    ((name, value),) = variables.items()
    return f"{name}={value!r}"


@pytest.mark.parametrize(
    "variables, variable, hint", BAD_CONFIGURATIONS, ids=[_bad_config_id(c) for c in BAD_CONFIGURATIONS]
)
def test_bad_value_is_a_startup_error_naming_the_variable_and_what_to_set(variables, variable, hint):
    environ = dict(HANDLER)
    for name, value in variables.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value

    with pytest.raises(StartupError) as raised:
        load_config(environ)

    message = str(raised.value)
    assert variable in message
    assert hint in message
    assert "\n" not in message, "the message is printed as one line"


def test_configuration_errors_exit_with_code_2():
    with pytest.raises(StartupError) as raised:
        config_from(ASYA_HANDLER_MODE="batch")
    assert raised.value.exit_code == 2
