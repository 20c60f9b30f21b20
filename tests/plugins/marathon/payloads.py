"""Canned Marathon payloads in the real servers' format (Marathon 1.x, written for these
tests after the shapes of Marathon's REST API docs and RAML types)."""

from __future__ import annotations

from typing import Any

#: ``GET /v2/apps``: apps without tasks, with the fields a Marathon 1.10 returns.
APPS: dict[str, Any] = {
    "apps": [
        {
            "id": "/appgroup/usergroup/users",
            "backoffFactor": 1.15,
            "backoffSeconds": 1,
            "cmd": "./users --port $PORT0",
            "container": None,
            "cpus": 0.5,
            "disk": 0,
            "executor": "",
            "instances": 2,
            "labels": {"team": "a"},
            "maxLaunchDelaySeconds": 300,
            "mem": 128,
            "gpus": 0,
            "networks": [{"mode": "host"}],
            "portDefinitions": [{"port": 10001, "name": "http", "protocol": "tcp"}],
            "requirePorts": False,
            "upgradeStrategy": {"maximumOverCapacity": 1, "minimumHealthCapacity": 1},
            "version": "2020-03-02T10:11:12.123Z",
            "versionInfo": {
                "lastScalingAt": "2020-03-02T10:11:12.123Z",
                "lastConfigChangeAt": "2020-03-01T09:00:00.000Z",
            },
            "killSelection": "YOUNGEST_FIRST",
            "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0},
            "role": "slave_public",
            "tasksStaged": 0,
            "tasksRunning": 2,
            "tasksHealthy": 2,
            "tasksUnhealthy": 0,
            "deployments": [],
            "readinessChecks": [
                {
                    "name": "readinessCheck",
                    "protocol": "HTTP",
                    "path": "/ready",
                    "portName": "http",
                    "interval": 30000,
                    "timeout": 10000,
                    "httpStatusCodesForReady": [200],
                    "preserveLastResponse": False,
                }
            ],
        },
        {"id": "/web", "instances": 1, "tasksRunning": 1, "deployments": []},
    ]
}


def task(**over: Any) -> dict[str, Any]:
    """A task as ``/v2/apps/<id>?embed=app.tasks`` shows it (Marathon 1.10)."""
    t: dict[str, Any] = {
        "id": "appgroup_usergroup_users.instance-564bd685-4c30-11e5-98c1-be5b2935a987._app.1",
        "appId": "/appgroup/usergroup/users",
        "host": "srv7.example.com",
        "ports": [31756],
        "servicePorts": [10001],
        "ipAddresses": [{"ipAddress": "172.17.0.2", "protocol": "IPv4"}],
        "slaveId": "20200302-101112-16842879-5050-1-S3",
        "state": "TASK_RUNNING",
        "stagedAt": "2020-03-02T10:11:13.000Z",
        "startedAt": "2020-03-02T10:11:15.000Z",
        "version": "2020-03-02T10:11:12.123Z",
        "localVolumes": [],
        "region": "primary",
        "zone": "a",
        "role": "slave_public",
        "cpus": 0.5,
        "mem": 128,
        "healthCheckResults": [
            {
                "alive": True,
                "consecutiveFailures": 0,
                "firstSuccess": "2020-03-02T10:11:20.000Z",
                "lastFailure": None,
                "lastSuccess": "2020-03-02T10:15:20.000Z",
                "lastFailureCause": None,
                "instanceId": "appgroup_usergroup_users.marathon-564bd685",
            }
        ],
        "checkResult": {"http": {"statusCode": 200}},
    }
    t.update(over)
    return t


def app(tasks: list[Any], **over: Any) -> dict[str, Any]:
    """``GET /v2/apps/<id>?embed=app.tasks``."""
    a: dict[str, Any] = dict(APPS["apps"][0])
    a["healthChecks"] = [
        {
            "gracePeriodSeconds": 300,
            "intervalSeconds": 60,
            "maxConsecutiveFailures": 3,
            "path": "/health",
            "portIndex": 0,
            "protocol": "MESOS_HTTP",
            "ipProtocol": "IPv4",
            "timeoutSeconds": 20,
            "delaySeconds": 15,
        }
    ]
    a["lastTaskFailure"] = {
        "appId": "/appgroup/usergroup/users",
        "host": "srv3.example.com",
        "message": "Command exited with status 1",
        "state": "TASK_FAILED",
        "taskId": "appgroup_usergroup_users.4b0c5b5c-b4ec-11e5-8a35-0242ac110003",
        "timestamp": "2020-03-01T09:05:00.000Z",
        "version": "2020-03-01T09:00:00.000Z",
        "slaveId": "20200302-101112-16842879-5050-1-S1",
    }
    a["tasks"] = tasks
    a.update(over)
    return {"app": a}


#: The legacy IP-per-task block (Marathon <= 1.4 shows it; later ones show ``networks``).
IP_PER_TASK = {
    "ipAddress": {
        "groups": [],
        "labels": {},
        "discovery": {"ports": [{"number": 8080, "name": "http", "protocol": "tcp"}]},
        "networkName": "dcos",
    }
}

#: A container network (Marathon >= 1.5, ``networks: [{mode: container}]``).
CONTAINER_NETWORK = {
    "networks": [{"mode": "container", "name": "dcos"}],
    "container": {
        "type": "MESOS",
        "docker": {"image": "example/users:2"},
        "portMappings": [
            {"containerPort": 9000, "hostPort": 0, "protocol": "tcp", "name": "http"},
            {"containerPort": 9990, "protocol": "tcp", "name": "admin"},
        ],
    },
    "portDefinitions": [],
}

#: Events as ``/v2/events`` frames them (the ``data:`` JSON of each).
STATUS_UPDATE = {
    "slaveId": "20200302-101112-16842879-5050-1-S3",
    "taskId": "appgroup_usergroup_users.instance-564bd685._app.1",
    "taskStatus": "TASK_RUNNING",
    "message": "",
    "appId": "/appgroup/usergroup/users",
    "host": "srv7.example.com",
    "ipAddresses": [{"ipAddress": "172.17.0.2", "protocol": "IPv4"}],
    "ports": [31756],
    "version": "2020-03-02T10:11:12.123Z",
    "eventType": "status_update_event",
    "timestamp": "2020-03-02T10:11:15.004Z",
}
INSTANCE_CHANGED = {
    "instanceId": "appgroup_usergroup_users.marathon-564bd685",
    "condition": "Running",
    "runSpecId": "/appgroup/usergroup/users",
    "agentId": "20200302-101112-16842879-5050-1-S3",
    "host": "srv7.example.com",
    "runSpecVersion": "2020-03-02T10:11:12.123Z",
    "timestamp": "2020-03-02T10:11:15.005Z",
    "eventType": "instance_changed_event",
}
HEALTH_CHANGED = {
    "appId": "/appgroup/usergroup/users",
    "instanceId": "appgroup_usergroup_users.marathon-564bd685",
    "version": "2020-03-02T10:11:12.123Z",
    "alive": False,
    "eventType": "health_status_changed_event",
    "timestamp": "2020-03-02T10:12:00.000Z",
}
APP_TERMINATED = {
    "appId": "/web",
    "eventType": "app_terminated_event",
    "timestamp": "2020-03-02T10:13:00.000Z",
}
API_POST = {
    "clientIp": "10.0.1.5",
    "uri": "/v2/apps/web",
    "appDefinition": {"id": "/web", "cmd": "python3 -m http.server $PORT0", "instances": 2},
    "eventType": "api_post_event",
    "timestamp": "2020-03-02T10:14:00.000Z",
}
DEPLOYMENT_INFO = {
    "plan": {
        "id": "f5d1e0a0-5c4b-4c5e-8b7f-1b1b1b1b1b1b",
        "original": {"id": "/", "apps": [], "groups": [], "version": "2020-03-02T10:00:00.000Z"},
        "target": {"id": "/", "apps": [], "groups": [], "version": "2020-03-02T10:14:00.000Z"},
        "steps": [{"actions": [{"action": "StartApplication", "app": "/web"}]}],
        "version": "2020-03-02T10:14:00.000Z",
    },
    "currentStep": {"actions": [{"action": "StartApplication", "app": "/web"}]},
    "eventType": "deployment_info",
    "timestamp": "2020-03-02T10:14:00.100Z",
}
