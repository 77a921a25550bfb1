//! Every route of the HTTP API, named once. The server's router is built from [`ALL`] (a route
//! or method not in it cannot be served), every client names routes from here, and a test
//! checks the OpenAPI document against [`ALL`]: a route added without its description fails.

/// An HTTP method the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
}

impl Method {
    /// Lower case, as the OpenAPI document's keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
        }
    }
}

/// One route and the methods it answers.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub path: &'static str,
    pub methods: &'static [Method],
}

pub const STATUS: &str = "/v1/status";
pub const MODE: &str = "/v1/mode";
pub const TOOLS: &str = "/v1/tools";
pub const SANDBOX: &str = "/v1/sandbox";
pub const CANCEL_DOWNLOAD: &str = "/v1/sandbox/cancel-download";
pub const NETWORK: &str = "/v1/sandbox/network";
pub const NETWORK_ALLOW: &str = "/v1/sandbox/network/allow";
pub const NETWORK_DISALLOW: &str = "/v1/sandbox/network/disallow";
pub const IMAGES: &str = "/v1/sandbox/images";
pub const IMAGES_REMOVE: &str = "/v1/sandbox/images/remove";
pub const IMAGES_REMAKE: &str = "/v1/sandbox/images/remake";
pub const IMAGES_LOCAL: &str = "/v1/sandbox/images/local";
pub const IMAGES_BUILD: &str = "/v1/sandbox/images/build";
pub const WORKSPACES: &str = "/v1/workspaces";
pub const WORKSPACES_REMOVE: &str = "/v1/workspaces/remove";
pub const RUNS: &str = "/v1/runs";
pub const RUN: &str = "/v1/runs/{id}";
pub const RUN_OUTPUT: &str = "/v1/runs/{id}/output";
pub const RUN_CHANGES: &str = "/v1/runs/{id}/changes";
pub const RUN_DIFF: &str = "/v1/runs/{id}/diff";
pub const RUN_UNDO: &str = "/v1/runs/{id}/undo";
pub const RUN_CANCEL: &str = "/v1/runs/{id}/cancel";
pub const STOP_ALL: &str = "/v1/runs/stop-all";
pub const CLIENTS: &str = "/v1/clients";
pub const APPROVALS: &str = "/v1/approvals";
pub const APPROVAL: &str = "/v1/approvals/{id}";
pub const EVENTS: &str = "/v1/events";
pub const OPENAPI: &str = "/v1/openapi.json";
pub const SHUTDOWN: &str = "/v1/shutdown";

use Method::{Get, Post, Put};

/// Every route, with its methods.
pub const ALL: &[Route] = &[
    Route {
        path: STATUS,
        methods: &[Get],
    },
    Route {
        path: MODE,
        methods: &[Get, Put],
    },
    Route {
        path: TOOLS,
        methods: &[Get],
    },
    Route {
        path: SANDBOX,
        methods: &[Get],
    },
    Route {
        path: CANCEL_DOWNLOAD,
        methods: &[Post],
    },
    Route {
        path: NETWORK,
        methods: &[Get, Post],
    },
    Route {
        path: NETWORK_ALLOW,
        methods: &[Post],
    },
    Route {
        path: NETWORK_DISALLOW,
        methods: &[Post],
    },
    Route {
        path: IMAGES,
        methods: &[Get],
    },
    Route {
        path: IMAGES_REMOVE,
        methods: &[Post],
    },
    Route {
        path: IMAGES_REMAKE,
        methods: &[Post],
    },
    Route {
        path: IMAGES_LOCAL,
        methods: &[Get],
    },
    Route {
        path: IMAGES_BUILD,
        methods: &[Post],
    },
    Route {
        path: WORKSPACES,
        methods: &[Get, Post],
    },
    Route {
        path: WORKSPACES_REMOVE,
        methods: &[Post],
    },
    Route {
        path: RUNS,
        methods: &[Get, Post],
    },
    Route {
        path: RUN,
        methods: &[Get],
    },
    Route {
        path: RUN_OUTPUT,
        methods: &[Get],
    },
    Route {
        path: RUN_CHANGES,
        methods: &[Get],
    },
    Route {
        path: RUN_DIFF,
        methods: &[Get],
    },
    Route {
        path: RUN_UNDO,
        methods: &[Post],
    },
    Route {
        path: RUN_CANCEL,
        methods: &[Post],
    },
    Route {
        path: STOP_ALL,
        methods: &[Post],
    },
    Route {
        path: CLIENTS,
        methods: &[Get, Post],
    },
    Route {
        path: APPROVALS,
        methods: &[Get],
    },
    Route {
        path: APPROVAL,
        methods: &[Post],
    },
    Route {
        path: EVENTS,
        methods: &[Get],
    },
    Route {
        path: OPENAPI,
        methods: &[Get],
    },
    Route {
        path: SHUTDOWN,
        methods: &[Post],
    },
];

/// A route with `{id}` filled in (`id` is the caller's: run and approval ids are plain
/// letters, digits and `_`).
pub fn with_id(route: &str, id: &str) -> String {
    route.replace("{id}", id)
}
