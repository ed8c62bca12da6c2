// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import "./SymmioTypes.sol";
import {LibLockedValues} from "./LibLockedValues.sol";
import {LibSignatures} from "./LibSignatures.sol";

/// Storage, events, access rules and shared helpers of LocalSymmio. Everything here is
/// internal; the external surface lives in LocalSymmio.sol.
abstract contract SymmioBase {
    using LibLockedValues for LockedValues;

    uint256 internal constant WAD = 1e18;

    // ---- configuration -------------------------------------------------------------------
    address internal _owner;
    address internal collateral;
    address internal _feeCollector;
    bool internal _globalPaused;
    bool internal _partyAActionsPaused;
    bool internal _partyBActionsPaused;

    uint256 internal _muonAppId;
    PublicKey internal _muonPublicKey;
    address internal _validGateway;
    uint256 internal _upnlValidTime;
    uint256 internal _priceValidTime;

    uint256 internal _pendingQuotesValidLength;
    uint256 internal _balanceLimitPerUser;
    mapping(uint256 => Symbol) internal symbols;
    mapping(address => bool) internal _isPartyB;
    mapping(address => bool) internal _liquidationStatus;

    // ---- balances (18 decimals) -----------------------------------------------------------
    mapping(address => uint256) internal _balanceOf;
    mapping(address => uint256) internal _allocatedA;
    // partyB collateral is kept per partyA: [partyB][partyA]
    mapping(address => mapping(address => uint256)) internal _allocatedB;
    mapping(address => LockedValues) internal lockedA;
    mapping(address => LockedValues) internal pendingLockedA;
    mapping(address => mapping(address => LockedValues)) internal lockedB;
    mapping(address => mapping(address => LockedValues)) internal pendingLockedB;
    // Trading fees are held here until the quote opens, so a refund never depends on the collector.
    uint256 internal heldTradingFees;

    // ---- nonces ---------------------------------------------------------------------------
    mapping(address => uint256) internal _nonceA;
    mapping(address => mapping(address => uint256)) internal _nonceB; // [partyB][partyA]

    // ---- quotes ---------------------------------------------------------------------------
    uint256 internal lastId;
    uint256 internal lastCloseId;
    mapping(uint256 => Quote) internal quotes;
    mapping(uint256 => uint256) internal closeIds;
    mapping(address => uint256[]) internal partyAPendingQuotes;
    mapping(address => mapping(address => uint256[])) internal partyBPendingQuotes;
    mapping(address => uint256[]) internal partyAOpenPositions;
    mapping(address => mapping(address => uint256[])) internal partyBOpenPositions;
    // 1-based index of a quote in the open-position lists, 0 = absent.
    mapping(uint256 => uint256) internal partyAPositionIndex;
    mapping(uint256 => uint256) internal partyBPositionIndex;

    // ---- events of chain.md §3 (none indexed except BalanceChange*) ------------------------
    event SendQuote(
        address partyA,
        uint256 quoteId,
        address[] partyBsWhiteList,
        uint256 symbolId,
        PositionType positionType,
        OrderType orderType,
        uint256 price,
        uint256 marketPrice,
        uint256 quantity,
        uint256 cva,
        uint256 lf,
        uint256 partyAmm,
        uint256 partyBmm,
        uint256 tradingFee,
        uint256 deadline
    );
    event LockQuote(address partyB, uint256 quoteId);
    event UnlockQuote(address partyB, uint256 quoteId, QuoteStatus quoteStatus);
    event OpenPosition(uint256 quoteId, address partyA, address partyB, uint256 filledAmount, uint256 openedPrice);
    event RequestToCancelQuote(address partyA, address partyB, QuoteStatus quoteStatus, uint256 quoteId);
    event AcceptCancelRequest(uint256 quoteId, QuoteStatus quoteStatus);
    // Close-side events exist twice: legacy (no closeId) and current (with closeId). Both are emitted.
    event RequestToClosePosition(
        address partyA,
        address partyB,
        uint256 quoteId,
        uint256 closePrice,
        uint256 quantityToClose,
        OrderType orderType,
        uint256 deadline,
        QuoteStatus quoteStatus
    );
    event RequestToClosePosition(
        address partyA,
        address partyB,
        uint256 quoteId,
        uint256 closePrice,
        uint256 quantityToClose,
        OrderType orderType,
        uint256 deadline,
        QuoteStatus quoteStatus,
        uint256 closeId
    );
    event RequestToCancelCloseRequest(address partyA, address partyB, uint256 quoteId, QuoteStatus quoteStatus);
    event RequestToCancelCloseRequest(
        address partyA, address partyB, uint256 quoteId, QuoteStatus quoteStatus, uint256 closeId
    );
    event FillCloseRequest(
        uint256 quoteId,
        address partyA,
        address partyB,
        uint256 filledAmount,
        uint256 closedPrice,
        QuoteStatus quoteStatus
    );
    event FillCloseRequest(
        uint256 quoteId,
        address partyA,
        address partyB,
        uint256 filledAmount,
        uint256 closedPrice,
        QuoteStatus quoteStatus,
        uint256 closeId
    );
    event AcceptCancelCloseRequest(uint256 quoteId, QuoteStatus quoteStatus);
    event AcceptCancelCloseRequest(uint256 quoteId, QuoteStatus quoteStatus, uint256 closeId);
    event ExpireQuote(QuoteStatus quoteStatus, uint256 quoteId);
    event ExpireQuoteOpen(QuoteStatus quoteStatus, uint256 quoteId);
    event ExpireQuoteClose(QuoteStatus quoteStatus, uint256 quoteId, uint256 closeId);
    event BalanceChangePartyA(address indexed partyA, uint256 amount, BalanceChangeType _type);
    event BalanceChangePartyB(address indexed partyB, address indexed partyA, uint256 amount, BalanceChangeType _type);

    // ---- account and admin events (local to this implementation) --------------------------
    event Deposit(address sender, address user, uint256 amount);
    event Withdraw(address sender, address user, uint256 amount);
    event AllocatePartyA(address user, uint256 amount, uint256 newAllocatedBalance);
    event DeallocatePartyA(address user, uint256 amount, uint256 newAllocatedBalance);
    event AllocateForPartyB(address partyB, address partyA, uint256 amount);
    event DeallocateForPartyB(address partyB, address partyA, uint256 amount);
    event SetMuonIds(uint256 muonAppId, address gateway, uint256 x, uint8 parity);
    event SetMuonConfig(uint256 upnlValidTime, uint256 priceValidTime);
    event RegisterPartyB(address partyB);
    event AddSymbol(uint256 symbolId, string name);
    event SetPendingQuotesValidLength(uint256 value);
    event SetBalanceLimitPerUser(uint256 value);
    event SetCollateral(address collateral);
    event SetPauseFlags(bool globalPaused, bool partyAActionsPaused, bool partyBActionsPaused);

    // ---- modifiers ------------------------------------------------------------------------
    modifier onlyOwner() {
        require(msg.sender == _owner, "Admin: Only owner");
        _;
    }

    modifier whenNotGlobalPaused() {
        require(!_globalPaused, "Pausable: Global paused");
        _;
    }

    modifier whenPartyAActionsNotPaused() {
        require(!_globalPaused, "Pausable: Global paused");
        require(!_partyAActionsPaused, "Pausable: PartyA actions paused");
        _;
    }

    modifier whenPartyBActionsNotPaused() {
        require(!_globalPaused, "Pausable: Global paused");
        require(!_partyBActionsPaused, "Pausable: PartyB actions paused");
        _;
    }

    modifier onlyPartyB() {
        require(_isPartyB[msg.sender], "Accessibility: Should be partyB");
        _;
    }

    modifier notLiquidatedPartyA(address partyA) {
        require(!_liquidationStatus[partyA], "Accessibility: PartyA isn't solvent");
        _;
    }

    modifier onlyPartyAOfQuote(uint256 quoteId) {
        require(quotes[quoteId].partyA == msg.sender, "Accessibility: Should be partyA of quote");
        _;
    }

    modifier onlyPartyBOfQuote(uint256 quoteId) {
        require(quotes[quoteId].partyB == msg.sender, "Accessibility: Should be partyB of quote");
        _;
    }

    // ---- oracle (chain.md §6) -------------------------------------------------------------
    function _verifyTSSAndGateway(bytes32 hash, SchnorrSign memory sign, bytes memory gatewaySignature)
        internal
        view
    {
        require(LibSignatures.schnorrVerify(_muonPublicKey, uint256(hash), sign), "LibMuon: TSS not verified");
        address signer = LibSignatures.recover(LibSignatures.toEthSignedMessageHash(hash), gatewaySignature);
        require(signer != address(0) && signer == _validGateway, "LibMuon: Gateway is not valid");
    }

    function _checkFresh(uint256 timestamp) internal view {
        require(block.timestamp <= timestamp + _upnlValidTime, "LibMuon: Expired signature");
    }

    /// sendQuote: (partyA, nonceA, upnl, symbolId, price).
    function _verifyPartyAUpnlAndPrice(SingleUpnlAndPriceSig memory sig, address partyA, uint256 symbolId)
        internal
        view
    {
        _checkFresh(sig.timestamp);
        bytes32 hash = keccak256(
            abi.encodePacked(
                _muonAppId,
                sig.reqId,
                address(this),
                partyA,
                _nonceA[partyA],
                sig.upnl,
                symbolId,
                sig.price,
                sig.timestamp,
                block.chainid
            )
        );
        _verifyTSSAndGateway(hash, sig.sigs, sig.gatewaySignature);
    }

    /// lockQuote, deallocateForPartyB: (partyB, partyA, nonceB, upnl of partyB).
    function _verifyPartyBUpnl(SingleUpnlSig memory sig, address partyB, address partyA) internal view {
        _checkFresh(sig.timestamp);
        bytes32 hash = keccak256(
            abi.encodePacked(
                _muonAppId,
                sig.reqId,
                address(this),
                partyB,
                partyA,
                _nonceB[partyB][partyA],
                sig.upnl,
                sig.timestamp,
                block.chainid
            )
        );
        _verifyTSSAndGateway(hash, sig.sigs, sig.gatewaySignature);
    }

    /// deallocate: (partyA, nonceA, upnl). Not in chain.md §6; same shape as the other layouts.
    function _verifyPartyAUpnl(SingleUpnlSig memory sig, address partyA) internal view {
        _checkFresh(sig.timestamp);
        bytes32 hash = keccak256(
            abi.encodePacked(
                _muonAppId, sig.reqId, address(this), partyA, _nonceA[partyA], sig.upnl, sig.timestamp, block.chainid
            )
        );
        _verifyTSSAndGateway(hash, sig.sigs, sig.gatewaySignature);
    }

    /// openPosition, fillCloseRequest: note partyB before partyA in the hash.
    function _verifyPairUpnlAndPrice(PairUpnlAndPriceSig memory sig, address partyB, address partyA, uint256 symbolId)
        internal
        view
    {
        _checkFresh(sig.timestamp);
        bytes32 hash = keccak256(
            abi.encodePacked(
                _muonAppId,
                sig.reqId,
                address(this),
                partyB,
                partyA,
                _nonceB[partyB][partyA],
                _nonceA[partyA],
                sig.upnlPartyB,
                sig.upnlPartyA,
                symbolId,
                sig.price,
                sig.timestamp,
                block.chainid
            )
        );
        _verifyTSSAndGateway(hash, sig.sigs, sig.gatewaySignature);
    }

    // ---- balances -------------------------------------------------------------------------
    /// allocated + upnl − locked − pending locked (trading-rules.md §2).
    function _availableA(address partyA, int256 upnl) internal view returns (int256) {
        return int256(_allocatedA[partyA]) + upnl - int256(lockedA[partyA].totalForPartyA())
            - int256(pendingLockedA[partyA].totalForPartyA());
    }

    function _availableB(address partyB, address partyA, int256 upnl) internal view returns (int256) {
        return int256(_allocatedB[partyB][partyA]) + upnl
            - int256(lockedB[partyB][partyA].totalForPartyB()) - int256(pendingLockedB[partyB][partyA].totalForPartyB());
    }

    /// Fee of a quote's current quantity: LIMIT at the requested price, MARKET at the signed price.
    function _tradingFee(Quote storage quote) internal view returns (uint256) {
        uint256 price = quote.orderType == OrderType.LIMIT ? quote.requestedOpenPrice : quote.marketPrice;
        return (quote.quantity * price / WAD) * quote.tradingFee / WAD;
    }

    function _refundTradingFee(Quote storage quote) internal {
        uint256 fee = _tradingFee(quote);
        heldTradingFees -= fee;
        _allocatedA[quote.partyA] += fee;
        emit BalanceChangePartyA(quote.partyA, fee, BalanceChangeType.PLATFORM_FEE_IN);
    }

    /// Realized or unrealized PnL of partyA for `quantity` moved from `fromPrice` to `toPrice`.
    function _pnlOfPartyA(PositionType side, uint256 fromPrice, uint256 toPrice, uint256 quantity)
        internal
        pure
        returns (int256)
    {
        int256 diff = side == PositionType.LONG
            ? int256(toPrice) - int256(fromPrice)
            : int256(fromPrice) - int256(toPrice);
        return diff * int256(quantity) / int256(WAD);
    }

    // ---- lists ----------------------------------------------------------------------------
    function _removeId(uint256[] storage ids, uint256 id) internal {
        uint256 n = ids.length;
        for (uint256 i = 0; i < n; i++) {
            if (ids[i] == id) {
                ids[i] = ids[n - 1];
                ids.pop();
                return;
            }
        }
        revert("LibQuote: Quote not found in pending list");
    }

    /// Drop a PENDING/LOCKED/CANCEL_PENDING quote from the pending lists and pending locks.
    function _removeFromPending(Quote storage quote) internal {
        _removeId(partyAPendingQuotes[quote.partyA], quote.id);
        LibLockedValues.sub(pendingLockedA[quote.partyA], quote.lockedValues);
        if (quote.partyB != address(0)) {
            _removeId(partyBPendingQuotes[quote.partyB][quote.partyA], quote.id);
            LibLockedValues.sub(pendingLockedB[quote.partyB][quote.partyA], quote.lockedValues);
        }
    }

    function _addOpenPosition(Quote storage quote) internal {
        uint256[] storage listA = partyAOpenPositions[quote.partyA];
        listA.push(quote.id);
        partyAPositionIndex[quote.id] = listA.length;
        uint256[] storage listB = partyBOpenPositions[quote.partyB][quote.partyA];
        listB.push(quote.id);
        partyBPositionIndex[quote.id] = listB.length;
    }

    function _removeOpenPosition(Quote storage quote) internal {
        _removeIndexed(partyAOpenPositions[quote.partyA], partyAPositionIndex, quote.id);
        _removeIndexed(partyBOpenPositions[quote.partyB][quote.partyA], partyBPositionIndex, quote.id);
    }

    function _removeIndexed(uint256[] storage list, mapping(uint256 => uint256) storage index, uint256 id) private {
        uint256 i = index[id] - 1;
        uint256 last = list[list.length - 1];
        list[i] = last;
        index[last] = i + 1;
        list.pop();
        delete index[id];
    }

    function _slice(uint256[] storage ids, uint256 start, uint256 size) internal view returns (Quote[] memory out) {
        uint256 n = ids.length;
        if (start >= n) return new Quote[](0);
        if (size > n - start) size = n - start;
        out = new Quote[](size);
        for (uint256 i = 0; i < size; i++) {
            out[i] = quotes[ids[start + i]];
        }
    }

    // ---- expiry (shared by expireQuote and the request paths that meet an expired quote) ----
    function _existingQuote(uint256 quoteId) internal view returns (Quote storage) {
        require(quoteId != 0 && quoteId <= lastId, "LibQuote: Invalid quoteId");
        return quotes[quoteId];
    }

    function _expire(uint256 quoteId) internal returns (QuoteStatus) {
        Quote storage quote = _existingQuote(quoteId);
        require(block.timestamp > quote.deadline, "LibQuote: Quote isn't expired");
        QuoteStatus status = quote.quoteStatus;
        if (status == QuoteStatus.PENDING || status == QuoteStatus.LOCKED || status == QuoteStatus.CANCEL_PENDING) {
            _removeFromPending(quote);
            _refundTradingFee(quote);
            quote.quoteStatus = QuoteStatus.EXPIRED;
            emit ExpireQuote(QuoteStatus.EXPIRED, quoteId);
            emit ExpireQuoteOpen(QuoteStatus.EXPIRED, quoteId);
        } else if (status == QuoteStatus.CLOSE_PENDING || status == QuoteStatus.CANCEL_CLOSE_PENDING) {
            quote.quoteStatus = QuoteStatus.OPENED;
            quote.requestedClosePrice = 0;
            quote.quantityToClose = 0;
            emit ExpireQuote(QuoteStatus.OPENED, quoteId);
            emit ExpireQuoteClose(QuoteStatus.OPENED, quoteId, closeIds[quoteId]);
        } else {
            revert("LibQuote: Invalid state");
        }
        quote.statusModifyTimestamp = block.timestamp;
        return quote.quoteStatus;
    }
}
