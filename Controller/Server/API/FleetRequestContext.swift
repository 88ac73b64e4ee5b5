import Hummingbird
import NIOCore

/// Who made a request, once authenticated.
enum Caller: Sendable {
    case admin
    case device(DeviceRecord)

    var auditName: String {
        switch self {
        case .admin: return "admin"
        case .device(let device): return "device:\(device.id)"
        }
    }
}

struct FleetRequestContext: RequestContext, RemoteAddressRequestContext {
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?
    var caller: Caller?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// JSON bodies; model uploads collect their body with their own, larger limit.
    var maxUploadSize: Int { 4 << 20 }

    /// The client's IP address, for throttling and the audit log.
    var remoteHost: String {
        switch remoteAddress {
        case .v4(let address)?: return address.host
        case .v6(let address)?: return address.host
        default: return "unknown"
        }
    }

    var device: DeviceRecord? {
        if case .device(let device)? = caller { return device }
        return nil
    }
}
