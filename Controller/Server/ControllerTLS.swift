import HummingbirdTLS
import NIOSSL

/// Optional HTTPS for the controller. Devices trust it through their system trust store
/// (or a public CA); model integrity never depends on it, since manifests are signed,
/// but credentials and tokens in headers do (docs/OPERATIONS.md, "TLS").
enum ControllerTLS {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func configuration(certificate: String?, key: String?) throws -> TLSConfiguration? {
        switch (certificate, key) {
        case (nil, nil):
            return nil
        case (let certificate?, let key?):
            let chain: [NIOSSLCertificate]
            do {
                chain = try NIOSSLCertificate.fromPEMFile(certificate)
            } catch {
                throw Failure(description: "cannot read the TLS certificate chain \(certificate): \(error)")
            }
            guard !chain.isEmpty else { throw Failure(description: "the TLS certificate file \(certificate) holds no PEM certificate") }
            let privateKey: NIOSSLPrivateKey
            do {
                privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
            } catch {
                throw Failure(description: "cannot read the TLS private key \(key): \(error)")
            }
            var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                         privateKey: .privateKey(privateKey))
            configuration.minimumTLSVersion = .tlsv12
            return configuration
        default:
            throw Failure(description: "TLS needs both --tls-certificate and --tls-key")
        }
    }
}
