import Crypto
import FleetKit
import Foundation
import Hummingbird
import HummingbirdCore
import NIOCore
import Logging

/// Opens (or creates) a data directory and runs the controller until SIGINT/SIGTERM.
public enum ControllerServer {
    public struct Startup: Sendable {
        public var fleetID: String
        /// Set only on first start: the admin token, shown once.
        public var newAdminToken: String?
    }

    static let adminTokenSetting = "admin_token_sha256"
    static let fleetIDSetting = "fleet_id"

    /// Creates the admin token if none exists and returns the fleet's identity.
    static func prepare(_ directory: DataDirectory, store: SQLiteFleetStore) async throws -> Startup {
        var fleetID = try await store.setting(fleetIDSetting)
        if fleetID == nil {
            fleetID = "fleet_" + Secrets.randomToken(bytes: 9)
            try await store.setSetting(fleetIDSetting, fleetID!)
        }
        var newToken: String?
        if try await store.setting(adminTokenSetting) == nil {
            newToken = "adm_" + Secrets.randomToken()
            try await store.setSetting(adminTokenSetting, Secrets.hash(newToken!))
        }
        return Startup(fleetID: fleetID!, newAdminToken: newToken)
    }

    /// Replaces the admin token; the old one stops working at once.
    public static func rotateAdminToken(dataDirectory: URL) async throws -> String {
        let directory = try DataDirectory(dataDirectory)
        let store = try SQLiteFleetStore(path: directory.databasePath)
        let token = "adm_" + Secrets.randomToken()
        try await store.setSetting(adminTokenSetting, Secrets.hash(token))
        // Sessions opened with the old token end with it.
        try await store.deleteAllSessions()
        return token
    }

    static let keyAnnouncementsSetting = "key_announcements"

    /// Replaces the signing key. The new public key is announced, signed with the old key,
    /// in every heartbeat reply, so agents move their pin to it. A running controller signs
    /// with the new key within a second (`SigningKeyring`); the announcement is stored
    /// before the key file is replaced, so no reply is signed with a key agents cannot reach.
    /// The old key is kept as `signing.key.retired-<time>` (0600).
    public static func rotateSigningKey(dataDirectory: URL) async throws -> String {
        let directory = try DataDirectory(dataDirectory)
        let store = try SQLiteFleetStore(path: directory.databasePath)
        let startup = try await prepare(directory, store: store)
        let old = try directory.signingKey()
        let new = Curve25519.Signing.PrivateKey()
        let announcement = try ManifestSigner(privateKey: old).announce(KeyAnnouncement(
            fleetID: startup.fleetID, previousPublicKey: old.publicKey.rawRepresentation.base64EncodedString(),
            newPublicKey: new.publicKey.rawRepresentation.base64EncodedString(), issuedAt: Date()))
        var chain = try await keyAnnouncements(store)
        chain.append(announcement)
        try await store.setSetting(keyAnnouncementsSetting, String(decoding: try FleetJSON.encoder.encode(chain), as: UTF8.self))
        let stamp = Int(Date().timeIntervalSince1970)
        try directory.writeSecret(old.rawRepresentation, to: directory.url.appendingPathComponent("signing.key.retired-\(stamp)"))
        try directory.writeSecret(new.rawRepresentation, to: directory.signingKeyURL)
        return new.publicKey.rawRepresentation.base64EncodedString()
    }

    /// `sha256:<hex>` of a base64 public key, as enrollment tokens carry it.
    public static func fingerprint(ofPublicKey key: String) -> String {
        ControllerKeyFingerprint.of(publicKeyBase64: key) ?? "(not an Ed25519 key)"
    }

    static func keyAnnouncements(_ store: any FleetStore) async throws -> [SignedKeyAnnouncement] {
        guard let text = try await store.setting(keyAnnouncementsSetting) else { return [] }
        return try FleetJSON.decoder.decode([SignedKeyAnnouncement].self, from: Data(text.utf8))
    }

    /// Online backup of the live database (SQLite backup API) to `destination`.
    public static func backup(dataDirectory: URL, to destination: URL) throws {
        let directory = try DataDirectory(dataDirectory)
        let store = try SQLiteFleetStore(path: directory.databasePath)
        try store.backup(to: destination.path)
    }

    public static func run(_ configuration: ControllerConfiguration, logger: Logger,
                           onStart: @escaping @Sendable (Startup, String) -> Void) async throws {
        let directory = try DataDirectory(configuration.dataDirectory)
        let store = try SQLiteFleetStore(path: directory.databasePath)
        let startup = try await prepare(directory, store: store)
        let blobStore = FileBlobStore(directory: directory.blobsURL)
        let stale = blobStore.removeTemporaryFiles()
        if !stale.isEmpty { logger.notice("removed \(stale.count) partial blob file(s) left by an interrupted upload") }
        let keyring = try SigningKeyring(directory: directory)
        let service = FleetService(store: store, blobs: blobStore, keyring: keyring, fleetID: startup.fleetID,
                                   configuration: configuration, clock: { Date() },
                                   transfers: TransferLimiter(permits: configuration.maxConcurrentTransfers,
                                                              queueLimit: configuration.maxQueuedTransfers))
        let caches = service.caches
        keyring.onChange {
            // Signed with the new key from now on (the announcement chain is cached per key
            // generation, so replies signed with it carry the announcement that vouches for it).
            caches.forgetManifests()
            logger.notice("signing key replaced on disk (rotate-signing-key); now signing with the new key")
        }
        logger.info("signing key fingerprint \(keyring.fingerprintWithoutReload) (enrollment tokens carry it)")
        let pushes = PushService(service: service, logger: logger)
        let routes = ControllerRoutes(service: service, pushes: pushes)

        let router = Router(context: FleetRequestContext.self)
        router.add(middleware: ErrorMiddleware(databasePath: directory.databasePath))
        router.add(middleware: MetricsMiddleware(metrics: service.metrics))
        let throttle = AuthThrottle(limit: configuration.authFailureLimit)
        let refusals = AuditRefusalLimiter()
        let adminAuth = AuthMiddleware(required: .admin, service: service, throttle: throttle) { try await store.setting(adminTokenSetting) }
        let deviceAuth = AuthMiddleware(required: .device, service: service, throttle: throttle) { nil }
        for spec in routes.specs {
            let path = RouterPath(spec.path)
            switch spec.access {
            case .admin:
                router.group().add(middleware: AuditMiddleware(store: store, clock: service.clock, refusals: refusals)).add(middleware: adminAuth)
                    .on(path, method: spec.method, use: spec.handler)
            case .device:
                router.group().add(middleware: deviceAuth).on(path, method: spec.method, use: spec.handler)
            case .enrollment:
                router.group().add(middleware: EnrollmentThrottle(throttle: throttle, clock: service.clock)).on(path, method: spec.method, use: spec.handler)
            case .anonymous:
                router.on(path, method: spec.method, use: spec.handler)
            }
        }

        // The dashboard: HTML pages behind a session cookie (see Dashboard/).
        let sessions = DashboardSessions(store: store, clock: service.clock)
        let pages = DashboardPages(service: service, rollouts: routes.rollouts, sessions: sessions, throttle: throttle, refusals: refusals)
        router.get("/login", use: pages.loginForm)
        router.post("/login") { request, context in
            try await pages.login(request, context, adminTokenHash: try await store.setting(adminTokenSetting))
        }
        router.get("/login/link/:code", use: pages.loginLink)
        router.post("/logout", use: pages.logout)
        router.get("/", use: pages.overview)
        router.get("/devices", use: pages.devices)
        router.get("/devices/:id", use: pages.device)
        router.get("/models", use: pages.models)
        router.get("/rollouts", use: pages.rolloutList)
        router.get("/rollouts/:id", use: pages.rollout)
        router.post("/rollouts/:id/:action", use: pages.rolloutAction)
        router.get("/charts", use: pages.charts)
        router.get("/audit", use: pages.audit)

        // Devices talk every few seconds at most: an idle keep-alive connection is closed
        // after `idleTimeout` instead of holding its buffers (tens of KB) and a descriptor,
        // and so is one whose response says `Connection: close` (a device told to come back).
        let http = HTTPServerBuilder.http1(configuration: .init(additionalChannelHandlers: [CloseAfterResponseHandler()],
                                                                idleTimeout: .milliseconds(Int64(configuration.idleTimeout * 1000))))
        let tls = try ControllerTLS.configuration(certificate: configuration.tlsCertificatePath, key: configuration.tlsKeyPath)
        let app = Application(
            router: router,
            server: try tls.map { try .tls(http, tlsConfiguration: $0) } ?? http,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "bitfleet-controller"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                onStart(startup, "\(tls == nil ? "http" : "https")://\(configuration.host):\(port)")
            },
            logger: logger
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService() }
            group.addTask { await pushes.run() }
            group.addTask { await routes.rollouts.run() }
            group.addTask { await UnreachableDevices(service: service, logger: logger).run() }
            group.addTask { await RecordRetention(service: service, logger: logger).run() }
            try await group.next()
            group.cancelAll()
        }
    }
}
